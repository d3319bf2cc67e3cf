"""Jobs: runs that outlive the request that started them (docs/jobs.md).

:mod:`model` holds the vocabulary (the durable rows and event logs live in the store,
:class:`clinvk.core.store.JobTable`), :mod:`executor` the seam where runs are handed to
workers (embedded thread pool today, a distributed queue later), :mod:`service` the one
place that submits, runs, cancels and recovers jobs on top of the engine.
"""

from clinvk.core.jobs.model import Job, JobKind, JobStatus
from clinvk.core.jobs.service import JobLimits, JobService

__all__ = ["Job", "JobKind", "JobLimits", "JobService", "JobStatus"]
