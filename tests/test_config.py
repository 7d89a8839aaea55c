"""Role configuration: the compact spec, validation, and key handling."""

import pytest

from fathom.config import RoleConfig
from fathom.errors import ConfigError


def test_parse_local_role():
    role = RoleConfig.parse("local:smollm2")
    assert role.is_local and role.local_name == "smollm2" and role.base_url is None
    assert role.api_key() is None


def test_parse_remote_role_with_key_env(monkeypatch):
    role = RoleConfig.parse("http://127.0.0.1:8000/v1/#Qwen/Qwen3-4B@MY_KEY")
    assert (role.base_url, role.model, role.api_key_env) == ("http://127.0.0.1:8000/v1", "Qwen/Qwen3-4B", "MY_KEY")
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_KEY"):
        role.api_key()
    monkeypatch.setenv("MY_KEY", "s3cret")
    assert role.api_key() == "s3cret"
    assert "s3cret" not in repr(role) and "s3cret" not in role.describe()


@pytest.mark.parametrize("bad", ["gpt-4.1-mini", "http://host/v1", "ftp://x#m"])
def test_parse_rejects_ambiguous_specs(bad):
    # The reference silently treated "gpt-4.1-mini" as a URL; here it is an error.
    with pytest.raises(ValueError):
        RoleConfig.parse(bad)


def test_remote_role_needs_base_url():
    with pytest.raises(ValueError):
        RoleConfig(model="gpt-4.1-mini")
