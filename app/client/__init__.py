"""A Python client of the GeneXfer HTTP API (httpx): classify, regress and embed DataFrames,
AnnData or numpy matrices; upload datasets; run fine-tuning jobs; search past predictions.

It imports nothing of the server side (an import-linter contract): installing `genexfer[client]`
on a laptop is enough. See docs/client.md.
"""

from app.client.client import FinetuneResult, GeneXferClient, JobFailed
from app.client.transport import GeneXferError

__all__ = ["FinetuneResult", "GeneXferClient", "GeneXferError", "JobFailed"]
