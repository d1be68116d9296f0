"""memshare: shared memory between processes, from Python.

Segments (named or anonymous) and views of them as zero-copy buffers,
single-producer single-consumer channels, publish-subscribe and
request/response services: the Rust library ``memshare``, with the same
lifetimes and the same bytes in shared memory, so Python and Rust processes
talk to each other. See the package README.
"""

from memshare._memshare import *  # noqa: F401,F403
from memshare._memshare import __version__  # noqa: F401
