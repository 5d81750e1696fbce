"""POST /v1/preprocess (records as JSON) and /v1/preprocess/file (an uploaded matrix)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError

from app.api.deps import CallerDep, RegistryDep, RequestIdDep, SettingsDep
from app.codecs import preprocess as preprocess_io
from app.errors import InvalidRequest, documented
from app.schemas.preprocess import PreprocessIn, PreprocessOptions, PreprocessOut
from app.services.preprocess import preprocess
from contract.matrix import ExpressionMatrix

router = APIRouter(prefix="/v1", tags=["preprocess"])
PROBLEMS = documented(
    e404="No such model or version",
    e413="Too many samples or too large a body",
    e422="Malformed body or file, bad values (named), wrong scale, too few genes, bad steps",
)


@router.post(
    "/preprocess",
    response_model=PreprocessOut,
    summary="QC and preprocess expression records (JSON in, JSON or a file out)",
    responses=PROBLEMS,
)
def preprocess_records(
    body: PreprocessIn,
    registry: RegistryDep,
    caller: CallerDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> PreprocessOut | Response:
    matrix = preprocess_io.from_records(body, settings.max_samples_per_request)
    done = preprocess(matrix=matrix, options=body, registry=registry, viewer=caller,
                      request_id=request_id, min_overlap=settings.min_gene_overlap)  # fmt: skip
    if body.output in ("json", "same"):
        return done.answer
    return _file(done.answer, done.matrix, body.output)


@router.post(
    "/preprocess/file",
    response_model=PreprocessOut,
    summary="QC and preprocess an uploaded CSV/TSV (+gz), Parquet, h5ad or GCT file",
    responses=PROBLEMS,
)
async def preprocess_file(
    file: Annotated[UploadFile, File(description="The expression matrix.")],
    registry: RegistryDep,
    caller: CallerDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    options: Annotated[str, Form(description="PreprocessOptions as a JSON object.")] = "{}",
) -> PreprocessOut | Response:
    try:
        parsed = PreprocessOptions.model_validate(orjson.loads(options or "{}"))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise InvalidRequest(f"the 'options' form field is not valid: {exc}") from exc
    data = await file.read()
    matrix, fmt = preprocess_io.from_upload(
        data, file.filename or "upload", parsed, settings.max_samples_per_request
    )
    done = preprocess(matrix=matrix, options=parsed, registry=registry, viewer=caller,
                      request_id=request_id, min_overlap=settings.min_gene_overlap)  # fmt: skip
    if parsed.output == "json":
        return done.answer
    wanted = fmt if parsed.output == "same" else parsed.output
    return _file(done.answer, done.matrix, "tsv" if wanted == "gct" else wanted)


def _file(answer: PreprocessOut, matrix: ExpressionMatrix, fmt: str) -> Response:
    body, media_type = preprocess_io.encode(matrix, fmt)
    qc = answer.qc
    # the QC verdict travels in a header (ids capped so the header stays small)
    summary = {
        "n_samples_in": qc["n_samples_in"],
        "n_samples_kept": qc["n_samples_kept"],
        "dropped": [d["sample"] for d in qc["dropped"]][:50],
        "flagged": [f["sample"] for f in qc["flagged"]][:50],
        "input_scale": answer.input_scale.used,
    }
    headers = {
        "Content-Disposition": f'attachment; filename="preprocessed.{fmt}"',
        "X-GeneXfer-QC": orjson.dumps(summary).decode(),
    }
    return Response(body, media_type=media_type, headers=headers)
