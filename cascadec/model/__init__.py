"""The typed input model of a spec, built from the AST (pydantic v2, ``extra="forbid"``).

- `keys`: the keys and call names the language accepts (stage kinds' keys come from `cascadec.contract.kinds`);
- `convert`: AST value → plain value per type; `calls`: data/reward/model/template calls;
- `inputs`: the pydantic input models; `build`: AST → validated `SpecIn`; `errors`: pydantic errors → spans.
"""

from cascadec.model.build import build, build_rest
from cascadec.model.inputs import DataIn, DomainIn, SpecIn, StageIn, json_schema
from cascadec.model.keys import PACKAGED_MODELS, stage_keys

__all__ = ["DataIn", "DomainIn", "PACKAGED_MODELS", "SpecIn", "StageIn", "build", "build_rest", "json_schema",
           "stage_keys"]
