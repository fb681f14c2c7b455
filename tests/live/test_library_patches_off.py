"""The contract tests with every library patch left out (LIBRARY_PATCHES=false, as
an operator sets it): the tests of tokens, sessions, items, the token endpoint,
revocation and API tokens, run by pytest in a fresh process, so that no patch was
ever applied in it, pass as they do with the patches.

About half a minute on 2 cores (the in-process tests of those files, one process):
hence here, with the live tests, and not in the fast subset.
"""

import os
import re
import subprocess
import sys

from tests.helpers import REPO

CONTRACT_TESTS = [
    "tests/inprocess/test_tokens.py",
    "tests/inprocess/test_sessions.py",
    "tests/inprocess/test_items.py",
    "tests/inprocess/test_token_endpoint.py",
    "tests/inprocess/test_revoke.py",
    "tests/inprocess/test_api_tokens.py",
]
# pytest, then a check that no app of the run patched a library function.
RUN = """
import sys

import flask_jwt_extended.view_decorators as views
import pytest
from flask_jwt_extended import JWTManager
from jwt.algorithms import HMACAlgorithm
from prometheus_client.mmap_dict import MmapedDict

code = pytest.main(sys.argv[1:])
library = (
    JWTManager._decode_jwt_from_config,
    views.get_unverified_jwt_headers,
    HMACAlgorithm.prepare_key,
    MmapedDict.read_all_values_from_file,
)
patched = [f.__qualname__ for f in library if getattr(f, "_library_patch", False)]
if patched:
    print("patched in this run:", patched)
    sys.exit(3)
sys.exit(code)
"""


def test_the_contract_tests_pass_with_every_patch_left_out():
    result = subprocess.run(
        [sys.executable, "-c", RUN, "-p", "no:cacheprovider", "-q"]
        + ["-m", "not live and not browser and not fuzz", *CONTRACT_TESTS],
        cwd=REPO,
        env={**os.environ, "LIBRARY_PATCHES": "false"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 300, summary
    assert not re.search(r"failed|error|skipped", summary), summary
