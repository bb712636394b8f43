from __future__ import annotations

from pathlib import Path

from agora.config import Settings, env_name

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [env_name(f) for f in Settings.__struct_fields__ if f"`{env_name(f)}`" not in text]
    assert not missing, f"README configuration table lacks {missing}"
