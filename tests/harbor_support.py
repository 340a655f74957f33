"""The `harbor` fixture: Harbor's own code (pinned, from PyPI) in its image, as a test client.

The image is built once per machine (a Debian trixie base from debootstrap, then Harbor with pip;
see `ttgen.testing.harbor`) and reused while its recipe is unchanged. A machine that cannot build
it fails the tests that need it, loudly, with the reason.
"""

from __future__ import annotations

import asyncio

import pytest

from ttgen.errors import TtgenError
from ttgen.testing.harbor import HarborRunner, ensure_harbor_image


@pytest.fixture(scope="session")
def harbor(docker_ready: None) -> HarborRunner:
    try:
        image = asyncio.run(ensure_harbor_image())
    except TtgenError as exc:
        pytest.fail(
            f"the Harbor image (ttgen/harbor) cannot be built: {exc}\n"
            "It needs root and debootstrap for its Debian trixie base (scripts/test.sh installs "
            "debootstrap) and PyPI for Harbor (through the extra CA bundle where TLS is "
            "intercepted: TTGEN_EXTRA_CA_CERT or [images] extra_ca_cert).",
            pytrace=False,
        )
    return HarborRunner(image)
