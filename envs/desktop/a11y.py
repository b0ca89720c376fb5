"""The desktop's accessibility tree (AT-SPI XML as OSWorld's VM server returns it) as the text
table OSWorld's agents read: one row per visible, named element with its position and size."""

from __future__ import annotations

import xml.etree.ElementTree as ET

NS = {
    "st": "https://accessibility.ubuntu.example.org/ns/state",
    "attr": "https://accessibility.ubuntu.example.org/ns/attributes",
    "cp": "https://accessibility.ubuntu.example.org/ns/component",
}
HEADER = "tag\tname\ttext\tclass\tdescription\tposition (top-left x&y)\tsize (w&h)"
_INTERACTIVE = {"button", "push-button", "toggle-button", "check-box", "radio-button",
                "menu", "menu-item", "combo-box", "entry", "text", "link", "list-item",
                "tab", "page-tab", "table-cell", "heading", "label", "paragraph", "icon",
                "document-frame", "slider", "spin-button", "tree-item", "scroll-bar"}


def _get(node: ET.Element, ns: str, name: str) -> str:
    return node.get(f"{{{NS[ns]}}}{name}", "")


def keep(node: ET.Element) -> bool:
    """Visible, on screen, and either named/with text or an interactive role."""
    if _get(node, "st", "showing") != "true" or _get(node, "st", "visible") != "true":
        return False
    size = _get(node, "cp", "size")
    if size:
        try:
            width, height = (int(v) for v in size.strip("()").split(","))
        except ValueError:
            return False
        if width <= 0 or height <= 0:
            return False
    has_text = bool(node.get("name") or (node.text or "").strip())
    return has_text or node.tag in _INTERACTIVE


def linearize(xml: str, max_chars: int = 12000) -> str:
    """The tree as a tab-separated table (OSWorld's layout), cut to ``max_chars``."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        return f"(the accessibility tree could not be read: {exc})"
    rows = [HEADER]
    for node in root.iter():
        if node is root or not keep(node):
            continue
        text = (node.text or "").strip().replace("\n", " ")
        rows.append("\t".join([node.tag, node.get("name", ""), f'"{text}"' if text else '""',
                               _get(node, "attr", "class"), _get(node, "attr", "description"),
                               _get(node, "cp", "screencoord"), _get(node, "cp", "size")]))
    table = "\n".join(rows)
    cut = len(table) - max_chars
    return table[:max_chars] + f"\n... [{cut} more characters]" if cut > 0 else table
