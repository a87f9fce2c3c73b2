"""The generic name → object registry (icbench/registry.py)."""

from __future__ import annotations

import pytest

from icbench.errors import IcbenchError, UnknownNameError
from icbench.registry import Registry


def _fresh() -> Registry[object]:
    reg: Registry[object] = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        pass

    @reg.register()
    def beta() -> None:
        pass

    reg.add("gamma_long", 3)
    return reg


def test_register_returns_the_object_and_uses_its_name_by_default() -> None:
    reg: Registry[object] = Registry("widget")

    def fn() -> int:
        return 1

    assert reg.register()(fn) is fn
    assert reg.get("fn") is fn


def test_lookup_membership_iteration_and_order() -> None:
    reg = _fresh()
    assert reg.keys() == ["alpha", "beta", "gamma_long"]  # registration order
    assert list(reg) == reg.keys()
    assert len(reg) == 3
    assert "alpha" in reg and "delta" not in reg
    assert reg["gamma_long"] == 3 and reg.get("gamma_long") == 3
    assert [k for k, _ in reg.items()] == reg.keys()
    assert "widget" in repr(reg)


def test_duplicate_name_raises() -> None:
    reg = _fresh()
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        reg.add("alpha", object())
    with pytest.raises(ValueError, match="already registered"):
        reg.register("beta")(object())
    assert len(reg) == 3  # the failed registrations left nothing behind


def test_unknown_name_lists_known_keys_and_suggests_the_closest() -> None:
    reg = _fresh()
    with pytest.raises(UnknownNameError) as err:
        reg.get("alpah")
    e = err.value
    assert isinstance(e, IcbenchError) and isinstance(e, KeyError)
    assert e.kind == "widget" and e.name == "alpah" and e.known == ["alpha", "beta", "gamma_long"]
    message = str(e)
    assert message.startswith("unknown widget 'alpah'")
    assert "known widgets: alpha, beta, gamma_long" in message
    assert "did you mean 'alpha'?" in message


def test_unknown_name_without_close_match_has_no_suggestion() -> None:
    with pytest.raises(UnknownNameError) as err:
        _fresh()["zzzzzz"]
    assert "did you mean" not in str(err.value)


def test_empty_registry_and_unhashable_name() -> None:
    reg: Registry[object] = Registry("gadget")
    with pytest.raises(UnknownNameError, match=r"known gadgets: \(none\)"):
        reg.get("x")
    with pytest.raises(UnknownNameError):
        _fresh().get(["alpha"])  # type: ignore[arg-type]
