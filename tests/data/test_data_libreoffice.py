"""LibreOffice help: HTML paragraph extraction, alignment by id, cleaning, split by file."""

from __future__ import annotations

from layershare.data import libreoffice
from layershare.data.helphtml import align, paragraphs
from layershare.data.split import bucket

DE = """<html><body><header id="TopLeftHeader"><p>Hilfe</p></header>
<h1 id="hd_id1" dir="auto">Neu &amp; Öffnen</h1>
<p id="par_id2" class="paragraph">Drücken Sie <span class="keycode">Strg</span>&#43;N.</p>
<p id="par_id3">LibreOffice</p>
<p id="par_id4">Taste <span id="sw"><span hidden="true" class="MAC">Befehl</span><span
   hidden="true">Strg</span></span>+N</p>
<p id="par_id5"></p>
<p id="par_id6">Zeile eins<br>Zeile&nbsp;zwei</p>
<p class="noid">ohne id</p>
<p id="par_id7">Nur deutsch</p>
</body></html>"""

EN = """<html><body><header id="TopLeftHeader"><p>Help</p></header>
<h1 id="hd_id1" dir="auto">New &amp; Open</h1>
<p id="par_id2" class="paragraph">Press <span class="keycode">Ctrl</span>&#43;N.</p>
<p id="par_id3">LibreOffice</p>
<p id="par_id4">Key <span id="sw"><span hidden="true" class="MAC">Command</span><span
   hidden="true">Ctrl</span></span>+N</p>
<p id="par_id5"></p>
<p id="par_id6">Line one<br/>Line  two</p>
<p class="noid">no id</p>
</body></html>"""


def test_paragraphs_strip_tags_unescape_and_squeeze():
    got = dict(paragraphs(EN))
    assert got == {"hd_id1": "New & Open", "par_id2": "Press Ctrl+N.", "par_id3": "LibreOffice",
                   "par_id4": "Key Ctrl+N", "par_id5": "", "par_id6": "Line one Line two"}
    assert dict(paragraphs(DE))["par_id6"] == "Zeile eins Zeile zwei"  # &nbsp; squeezed


def test_unclosed_paragraph_ends_at_the_next_one():
    assert paragraphs('<p id="a">one <b>bold<p id="b">two</p>') == [("a", "one bold"), ("b", "two")]


def test_align_pairs_by_id_and_repeated_ids_in_order():
    assert align([("x", "eins"), ("y", "zwei"), ("x", "drei")],
                 [("x", "one"), ("x", "three"), ("y", "two"), ("z", "four")]) == \
        [("eins", "one"), ("drei", "three"), ("zwei", "two")]
    assert align([("x", "a")], [("x", "b"), ("x", "c")]) == []  # ambiguous: skipped


def _write_tree(root, lang_dir, files):
    for rel, html in files.items():
        path = root / lang_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    return root / lang_dir


def test_help_pairs_drop_equal_and_empty_and_unmatched(tmp_path):
    de = _write_tree(tmp_path, "de", {"text/shared/a.html": DE, "text/only_de.html": DE})
    en = _write_tree(tmp_path, "en-US", {"text/shared/a.html": EN})
    pairs = libreoffice.help_pairs(de, en)
    assert list(pairs) == ["text/shared/a.html"]
    assert pairs["text/shared/a.html"] == [
        ("Neu & Öffnen", "New & Open"), ("Drücken Sie Strg+N.", "Press Ctrl+N."),
        ("Taste Strg+N", "Key Ctrl+N"), ("Zeile eins Zeile zwei", "Line one Line two")]


def test_split_pairs_by_file_without_leakage_and_deterministic():
    by_file = {f"text/f{i}.html": [(f"de{i}", f"en{i}"), ("Beispiel:", "Example:"),
                                   (f"de{i}", f"en{i}")] for i in range(200)}
    splits = libreoffice.split_pairs(by_file, valid=0.1, test=0.1)
    assert splits == libreoffice.split_pairs(dict(reversed(list(by_file.items()))), 0.1, 0.1)
    for i in range(200):  # each file's unique pair sits in its file's split, once
        split = bucket(f"text/f{i}.html", 0.1, 0.1)
        assert sum(p == (f"de{i}", f"en{i}") for p in splits[split]) == 1
    sides = {s: {x for pair in pairs for x in pair} for s, pairs in splits.items()}
    assert not sides["train"] & sides["test"] and not sides["train"] & sides["valid"]
    assert not sides["valid"] & sides["test"]
    assert ("Beispiel:", "Example:") in splits["test"]  # shared pair goes to test only
    assert all(splits[s] for s in splits)


def test_side_seen_in_test_is_dropped_from_train():
    files = [f"text/f{i}.html" for i in range(100)]
    test_file = next(f for f in files if bucket(f, 0.1, 0.1) == "test")
    train_file = next(f for f in files if bucket(f, 0.1, 0.1) == "train")
    splits = libreoffice.split_pairs({test_file: [("Ja", "Yes")],
                                      train_file: [("Ja", "Yeah"), ("Nein", "No")]}, 0.1, 0.1)
    assert splits == {"train": [("Nein", "No")], "valid": [], "test": [("Ja", "Yes")]}
