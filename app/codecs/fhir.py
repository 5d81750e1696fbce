"""Past predictions as FHIR R4 for a LIMS: a Bundle with a DiagnosticReport per recorded call and
an Observation per sample it answered.

Built and validated with the `fhir.resources` package's R4B models (R4B, 4.3.0, is R4 with
corrections; DiagnosticReport and Observation are R4's), never as hand-written JSON. A sample
is named by a logical reference (`specimen.identifier`, the sample id sent), the model by the
Observation's `method` and `device`; a classifier's Observation holds the label as a coded
value with one component per class probability, a regressor's one component per target. Calls
that kept no outputs (embeddings) have nothing to report and are left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from app.schemas.jobs import PastPrediction

MEDIA_TYPE = "application/fhir+json"
BASE = "https://genexfer.dev/fhir"
REPORT_CODE = Coding(
    system=f"{BASE}/CodeSystem/report",
    code="expression-model-prediction",
    display="Prediction of a gene-expression model",
)
_UCUM = "http://unitsofmeasure.org"


def _labels_system(p: PastPrediction) -> str:
    return f"{BASE}/models/{p.model}/{p.version}/labels"


def _urn(*parts: object) -> str:
    # stable ids: the same search gives the same Bundle
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(map(str, parts)))}"


def _observation(p: PastPrediction, output: dict[str, Any]) -> Observation:
    model = f"{p.model}/{p.version}"
    common: dict[str, Any] = {
        "status": "final",
        "identifier": [
            Identifier(system=f"{BASE}/prediction", value=f"{p.prediction_id}/{p.sample_id}")
        ],
        "specimen": Reference(
            identifier=Identifier(system=f"{BASE}/sample-id", value=p.sample_id),
            display=p.sample_id,
        ),
        "method": CodeableConcept(text=f"GeneXfer model {model} ({p.task})"),
        "device": Reference(display=f"GeneXfer model {model}"),
        "issued": p.created_at,
        "effectiveDateTime": p.created_at,
    }
    if "label" in output:
        labels = _labels_system(p)
        return Observation(
            code=CodeableConcept(
                coding=[Coding(system=f"{BASE}/CodeSystem/observation", code="predicted-label")],
                text=f"Predicted label ({model})",
            ),
            valueCodeableConcept=CodeableConcept(
                coding=[Coding(system=labels, code=output["label"])], text=output["label"]
            ),
            component=[
                ObservationComponent(
                    code=CodeableConcept(
                        coding=[Coding(system=labels, code=label)],
                        text=f"probability of {label}",
                    ),
                    valueQuantity=Quantity(value=float(prob), unit="1", system=_UCUM, code="1"),
                )
                for label, prob in output.get("probabilities", {}).items()
            ],
            **common,
        )
    return Observation(
        code=CodeableConcept(
            coding=[Coding(system=f"{BASE}/CodeSystem/observation", code="predicted-values")],
            text=f"Predicted values ({model})",
        ),
        component=[
            ObservationComponent(
                code=CodeableConcept(
                    coding=[Coding(system=_labels_system(p), code=target)], text=target
                ),
                valueQuantity=Quantity(value=float(value)),
            )
            for target, value in output.get("values", {}).items()
        ],
        **common,
    )


def bundle(predictions: Sequence[PastPrediction], *, now: datetime | None = None) -> Bundle:
    """A collection Bundle: per recorded call a DiagnosticReport whose results are its samples'
    Observations, each entry with a stable urn:uuid."""
    by_call: dict[uuid.UUID, list[PastPrediction]] = {}
    for p in predictions:
        if p.output is not None:
            by_call.setdefault(p.prediction_id, []).append(p)
    entries: list[BundleEntry] = []
    for call_id, samples in by_call.items():
        first = samples[0]
        observed = [(_urn(call_id, p.sample_id), _observation(p, p.output or {})) for p in samples]
        report = DiagnosticReport(
            status="final",
            identifier=[Identifier(system=f"{BASE}/request-id", value=first.request_id)],
            code=CodeableConcept(
                coding=[REPORT_CODE], text=f"{first.task} by {first.model}/{first.version}"
            ),
            effectiveDateTime=first.created_at,
            issued=first.created_at,
            result=[Reference(reference=url) for url, _ in observed],
            conclusion=f"{len(samples)} sample(s) answered by GeneXfer model "
            f"{first.model}/{first.version}",
        )
        entries.append(BundleEntry(fullUrl=_urn(call_id), resource=report))
        entries.extend(BundleEntry(fullUrl=url, resource=obs) for url, obs in observed)
    return Bundle(
        type="collection",
        timestamp=now or datetime.now(UTC),
        entry=entries or None,
    )


def to_json(predictions: Sequence[PastPrediction]) -> bytes:
    """The Bundle as FHIR JSON (validated on construction by fhir.resources)."""
    return bundle(predictions).model_dump_json(exclude_none=True).encode()
