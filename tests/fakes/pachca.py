"""The fake Pachca of the tests is the sandbox's imitation of Pachca (the `sandbox` package,
shipped with the service for `pachca-bridge demo`): one implementation, re-exported here under
the names the tests use.

    fake = FakePachca(token="t")
    base_url = await fake.serve(aiohttp_server)      # what `pachca.api_url` points at
    ...
    assert fake.violations == []
"""

from sandbox.faults import FormPart, MalformedKind, RecordedRequest, SandboxError, Violation
from sandbox.pachca import API_PREFIX, DIRECT_URL, PachcaSandbox
from sandbox.spec import SPEC_PATH, load_spec, spec_errors
from sandbox.storage import NewFile

FAKE_API_PREFIX = API_PREFIX
FakePachca = PachcaSandbox

__all__ = [
    "DIRECT_URL",
    "FAKE_API_PREFIX",
    "SPEC_PATH",
    "FakePachca",
    "FormPart",
    "MalformedKind",
    "NewFile",
    "RecordedRequest",
    "SandboxError",
    "Violation",
    "load_spec",
    "spec_errors",
]
