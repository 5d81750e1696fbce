"""Every query the service makes, one module per table; the tenant and ownership rules live here.

Functions take the session first and flush, never commit: the caller (a request's session
dependency, a job runner, the group-commit writer) owns the transaction.
"""
