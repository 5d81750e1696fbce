"""`GeneXferClient`: the service from Python, with pandas in and out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
import pandas as pd
from tqdm.auto import tqdm

from app.client import frames
from app.client.frames import Expression
from app.client.transport import GeneXferError, Transport

Scale = Literal["counts", "normalized", "log", "standardized"]
FINAL = frozenset({"succeeded", "failed", "cancelled"})
NPZ = "application/x-npz"


class JobFailed(Exception):
    """A fine-tuning job ended without a model; `job` is its last state."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} {job['status']}: {job.get('error') or 'no model'}")
        self.job = job


@dataclass(frozen=True)
class FinetuneResult:
    """A job that succeeded and the new model version, as `GET /v1/models/{name}` describes it."""

    job: dict[str, Any]
    model: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.model["name"])

    @property
    def version(self) -> int:
        return int(self.model["version"])


class GeneXferClient:
    """A client of one GeneXfer service.

    Parameters
    ----------
    base_url:
        e.g. ``http://127.0.0.1:8000``.
    api_key:
        Sent as ``Authorization: Bearer``; needed where the service has keys on.
    timeout_s:
        Per HTTP request.
    retries, backoff_s:
        Retries of a request after a connection error, a timeout or a 5xx (each POST with its
        own Idempotency-Key, so a retry never runs twice), waiting backoff_s, 2×, 4×, … between.
    chunk_rows, chunk_bytes:
        Inputs are sent in chunks of at most this many samples and about this many bytes of
        values, each a request of its own (the answers are joined in order).
    transport:
        An httpx transport to use instead of the network (tests, proxies).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        chunk_rows: int = 1000,
        chunk_bytes: int = 64 << 20,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._t = Transport(
            base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            transport=transport,
        )
        self.chunk_rows, self.chunk_bytes = chunk_rows, chunk_bytes

    def __enter__(self) -> GeneXferClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self._t.close()

    # ------------------------------------------------------------------ models and inference

    def models(self) -> list[dict[str, Any]]:
        """Every served model with its versions (`GET /v1/models`)."""
        return list(self._t.json("GET", "/v1/models")["models"])

    def model(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One version's card: kind, panel genes, labels, input scale and transforms, metrics."""
        params = {"version": version} if version is not None else {}
        answer: dict[str, Any] = self._t.json("GET", f"/v1/models/{name}", params=params)
        return answer

    def classify(self, model: str, data: Expression, **how: Any) -> pd.DataFrame:
        """The label and every class probability (`p_<class>`) of each sample.

        `data`: a DataFrame (samples × genes, sample ids in the index), an AnnData, or a numpy
        matrix with ``genes=[...]`` (and ``sample_ids=[...]``). Also ``version=``,
        ``input_scale=`` (declare the scale), ``genes=``, ``sample_ids=``, and for a multi-task
        model ``tasks=[...]`` (default: every task; columns `<task>.label`, `<task>.p_<class>`,
        and a regression task's value under its name). The frame's `attrs` hold the model, each
        chunk's gene overlap and any input transform the service applied.
        """
        return self._infer("classify", model, data, **how)

    def explain(
        self,
        model: str,
        data: Expression,
        top: int = 20,
        *,
        gene_sets: str | None = None,
        **how: Any,
    ) -> pd.DataFrame:
        """The `top` genes that most drove each sample's predicted label, one row per (sample,
        gene), best first: `label`, `rank`, `gene`, `panel_gene`, signed `attribution`,
        `in_input` (integrated gradients, docs/api.md). With ``gene_sets="go_bp"`` or
        ``"progeny"`` the frame's ``attrs["gene_sets"]`` maps each sample id to its enriched
        sets. Takes its input as `classify` does; the model must have an explanation graph.
        """
        params = {"explain": top, **({"gene_sets": gene_sets} if gene_sets else {})}
        answers = self._answers("classify", model, data, extra=params, **how)
        return frames.explanation_frame(answers)

    def regress(self, model: str, data: Expression, **how: Any) -> pd.DataFrame:
        """Each target's predicted value for each sample (as `classify` takes its input)."""
        return self._infer("regress", model, data, **how)

    def embed(self, model: str, data: Expression, **how: Any) -> pd.DataFrame:
        """Each sample's embedding, columns ``e0``, ``e1``, … (as `classify` takes its input)."""
        return self._infer("embed", model, data, **how)

    def _infer(self, task: str, model: str, data: Expression, **how: Any) -> pd.DataFrame:
        return frames.answer_frame(task, self._answers(task, model, data, **how))

    def _answers(
        self,
        task: str,
        model: str,
        data: Expression,
        *,
        version: int | None = None,
        input_scale: Scale | None = None,
        genes: Sequence[str] | None = None,
        sample_ids: Sequence[str] | None = None,
        tasks: Sequence[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        samples = frames.samples_of(data, genes, sample_ids)
        params: dict[str, Any] = dict(extra or {})
        if tasks is not None:
            params["task"] = list(tasks)
        if version is not None:
            params["version"] = version
        if input_scale is not None:
            params["input_scale"] = input_scale
        answers = []
        for start, stop in frames.chunks(samples, self.chunk_rows, self.chunk_bytes):
            answers.append(
                self._t.json(
                    "POST",
                    f"/v1/models/{model}/{task}",
                    params=params,
                    content=frames.npz_body(samples, start, stop),
                    headers={"Content-Type": NPZ, "Accept": "application/json"},
                )
            )
        return answers

    # ------------------------------------------------------------------ datasets and jobs

    def upload_dataset(
        self,
        data: Expression,
        labels: pd.Series | pd.DataFrame | None = None,
        *,
        name: str | None = None,
        genes: Sequence[str] | None = None,
        sample_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Upload labelled samples for fine-tuning; the dataset as `GET /v1/datasets/{id}`.

        Labels: a Series or DataFrame indexed by sample id, the text columns of a DataFrame
        `data`, or an AnnData's obs (every column).
        """
        if isinstance(data, pd.DataFrame):
            text = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
            if text:
                inline = data[text]
                labels = inline if labels is None else pd.concat([inline, labels], axis=1)
                data = data.drop(columns=text)
        elif labels is None and hasattr(data, "obs") and len(data.obs.columns):
            labels = data.obs
        samples = frames.samples_of(data, genes, sample_ids)
        body, label_columns = frames.table_upload(samples, labels)
        form = {"format": "parquet", "name": name or "dataset"}
        if label_columns:
            form["label_columns"] = ",".join(label_columns)
        files = {"file": (f"{form['name']}.parquet", body, "application/vnd.apache.parquet")}
        answer: dict[str, Any] = self._t.json("POST", "/v1/datasets", data=form, files=files)
        return answer

    def finetune(
        self,
        *,
        encoder: str,
        dataset_id: str | uuid.UUID,
        label_column: str,
        output_name: str,
        encoder_version: int | None = None,
        progress: bool | None = True,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        **options: Any,
    ) -> FinetuneResult:
        """Submit a fine-tuning job, follow it with a progress bar, return the served new model.

        `options` are the job's other fields (``task``, ``strategy``, ``hyperparameters``,
        ``validation``, ``description``; docs/jobs.md). Raises `JobFailed` if the job fails or is
        cancelled, TimeoutError after `timeout_s` (the job goes on; `job(id)` follows it).
        """
        job = self.submit_finetune(
            encoder=encoder,
            dataset_id=dataset_id,
            label_column=label_column,
            output_name=output_name,
            encoder_version=encoder_version,
            **options,
        )
        job = self.wait(job["id"], progress=progress, poll_s=poll_s, timeout_s=timeout_s)
        model = self._served(job["result_model"], job["result_version"], poll_s, timeout_s)
        return FinetuneResult(job, model)

    def submit_finetune(
        self,
        *,
        encoder: str,
        dataset_id: str | uuid.UUID,
        label_column: str,
        output_name: str,
        encoder_version: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Queue a fine-tuning job and return it at once (`wait` follows it)."""
        body = {
            "encoder": {"name": encoder, "version": encoder_version},
            "dataset_id": str(dataset_id),
            "label_column": label_column,
            "output_name": output_name,
            **options,
        }
        job: dict[str, Any] = self._t.json("POST", "/v1/finetune-jobs", json=body)
        return job

    def cancel(self, job_id: str | uuid.UUID) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop (a 409 if it already ended)."""
        job: dict[str, Any] = self._t.json("POST", f"/v1/finetune-jobs/{job_id}/cancel")
        return job

    def job(self, job_id: str | uuid.UUID) -> dict[str, Any]:
        """A job's state: status, progress, epoch, metrics, loss curve, result."""
        answer: dict[str, Any] = self._t.json("GET", f"/v1/finetune-jobs/{job_id}")
        return answer

    def wait(
        self,
        job_id: str | uuid.UUID,
        *,
        progress: bool | None = True,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll a job until it ends, with a tqdm bar (percent, epoch, losses); the last state."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with tqdm(total=100, desc=f"job {str(job_id)[:8]}", unit="%", disable=not progress) as bar:
            while True:
                job = self.job(job_id)
                bar.update(round(100 * float(job["progress"])) - bar.n)
                bar.set_postfix(status=job["status"], epoch=job.get("epoch"), refresh=False)
                if job["status"] in FINAL:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
                time.sleep(poll_s)
        if job["status"] != "succeeded":
            raise JobFailed(job)
        return job

    def _served(
        self, name: str, version: int, poll_s: float, timeout_s: float | None
    ) -> dict[str, Any]:
        # the service loads a new version on its next scan of the models folder
        deadline = time.monotonic() + (timeout_s or 120.0)
        while True:
            try:
                return self.model(name, version)
            except GeneXferError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(poll_s)

    # ------------------------------------------------------------------ past predictions

    def predictions(
        self,
        *,
        sample_id: str | None = None,
        model: str | None = None,
        version: int | None = None,
        request_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> pd.DataFrame:
        """Recorded results, newest first, one row per (call, sample), filtered as given."""
        params = _filters(sample_id, model, version, request_id, since, until) | {"limit": limit}
        found = self._t.json("GET", "/v1/predictions", params=params)["predictions"]
        return frames.predictions_frame(found)

    def predictions_fhir(self, **filters: Any) -> dict[str, Any]:
        """The same search as a FHIR R4 Bundle (a DiagnosticReport per call, an Observation per
        sample), as JSON."""
        params = _filters(**filters) | {"format": "fhir"}
        answer: dict[str, Any] = self._t.json("GET", "/v1/predictions", params=params)
        return answer


def _filters(
    sample_id: str | None = None,
    model: str | None = None,
    version: int | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    given: Mapping[str, Any] = {
        "sample_id": sample_id,
        "model": model,
        "version": version,
        "request_id": request_id,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    return {k: v for k, v in given.items() if v is not None}
