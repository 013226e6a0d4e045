import pytest

from tests.http_api.support import ApiStack


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    s = ApiStack(tmp_path_factory.mktemp("http-api"))
    yield s
    s.stop()


@pytest.fixture
def api(stack):
    """A signing client of the shipped HTTP account 900004."""
    return stack.client()
