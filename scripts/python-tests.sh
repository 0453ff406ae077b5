#!/usr/bin/env bash
# Installs the Python package into .venv (the native library in the debug profile, so it shares
# cargo test's build) and runs its pytest suite against trees folded by the CLI. Run by .ci/run
# after the test servers are up (the S3 tests read AWS_ENDPOINT_URL and SHEAF_TEST_S3_BUCKET
# from target/test-servers.env; SHEAF_TEST_LOCAL_ONLY=1 skips them). Extra arguments go to pytest.
# PySpark and pyarrow (python/requirements-spark.txt) are installed for the Spark fold's tests,
# which run PySpark in local mode on the machine's Java.
# torch (python/requirements-torch.txt; PyPI's build, about 5 GB with its CUDA wheels, about a
# minute and a half to install) is installed too, for the DataLoader, sampler and streaming
# tests; SHEAF_TEST_TORCH=0 leaves it out and those tests are skipped, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
pip_install -r python/requirements-test.txt -r python/requirements-spark.txt
if [ "${SHEAF_TEST_TORCH:-1}" != 0 ]; then
  pip_install -r python/requirements-torch.txt
fi
# Always reinstall: the package holds a copy of the library, which must be this checkout's.
SHEAF_CARGO_PROFILE=dev pip_install --force-reinstall --no-deps ./python
cargo build --locked --bin sheaf
SHEAF_BIN="$PWD/target/debug/sheaf" "$VENV/bin/python" -m pytest -q -rs python/tests "$@"
