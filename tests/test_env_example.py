"""Every environment variable the settings read is documented in .env.example."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_it_documents_every_setting_in_env_example():
    settings_source = (ROOT / "chatbot_site" / "settings.py").read_text()
    read = set(
        re.findall(r'env(?:str|bool|int|float|list|choice)\(\s*"([A-Z_]+)"', settings_source)
    )
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert read, "no settings found: the pattern is stale"
    assert read - documented == set()


def test_it_documents_every_setting_in_the_configuration_page_with_its_area():
    settings_source = (ROOT / "chatbot_site" / "settings.py").read_text()
    read = set(
        re.findall(r'env(?:str|bool|int|float|list|choice)\(\s*"([A-Z_]+)"', settings_source)
    )
    page = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z_]+)`", page, re.M))
    assert read - documented == set()
    example = (ROOT / ".env.example").read_text()
    areas = re.findall(r"^## (.+)$", page, re.M)[1:]  # after "Contents"
    headers = re.findall(r"^# --- (.+?) -+$", example, re.M)
    assert headers == [area.replace("`", "") for area in areas]
