"""companion.glue: the book's glue when myst-nb is there, a print when it is not."""

import builtins

import pytest

from companion.glue import glue


def test_glue_uses_myst_nb(monkeypatch):
    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    glue("x", 1.5, display=False)
    assert calls == [("x", 1.5, False)]


def test_glue_prints_without_myst_nb(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name == "myst_nb":
            raise ImportError("no myst_nb here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    glue("walk", "forwards", display=False)
    assert capsys.readouterr().out == "walk = 'forwards'\n"


def test_glue_rejects_a_bad_name():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        glue("", 1)
