"""Rebuild the catalogues: extract → update zh and en → fill zh → check en → compile.

Our source strings are written in Chinese, so:

* **zh** is filled automatically: the translation of a Chinese msgid is the msgid
  itself. English msgids come from FAB (its zh catalogue is from 2015 and misses
  strings) or our templates; they are translated in FAB_GAPS below.
* **en** is translated by hand in ``translations/en/LC_MESSAGES/messages.po`` — that
  file is the source of the English text. It is updated from the sources like
  ``pybabel update`` does (existing translations are kept, new msgids arrive with an
  empty msgstr, a changed msgid gets its old translation marked ``#, fuzzy``), and
  written sorted by msgid, one line per msgid and msgstr, so new entries are easy
  to find and fill in. English msgids (FAB's own, already English) need nothing.

Run: ``.venv/bin/python tools/i18n.py`` (or ``make i18n``). It exits 1 and prints
the list when a Chinese msgid has no English translation, an English translation is
fuzzy (needs review: delete the ``#, fuzzy`` line once it is right), or a
translation's placeholders (``%(name)s``, ``{name}``) differ from its msgid's.
``--check`` reports without writing anything.
"""
import argparse
import copy
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "translations"
PO = {loc: TRANSLATIONS / loc / "LC_MESSAGES/messages.po" for loc in ("zh", "en")}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
# %(name)s / %(n)d (Flask-Babel's gettext variables) and str.format's {name}
PLACEHOLDER = re.compile(r"%\([^)]+\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|\{[A-Za-z_][A-Za-z0-9_]*\}")

FAB_GAPS = {
    # strings FAB's own zh catalogue misses or our templates add
    "Add": "新增", "Edit": "编辑", "Show": "查看", "Delete": "删除",
    "Are you sure you want to delete this item?": "确认删除？",
    "Cancel": "取消", "OK": "确定",
    "User confirmation needed": "请确认",
    "Database Error": "数据库错误",
    "Must have at least two capital letters, one special character, two digits, three lower case letters and a minimal length of 10.":
        "密码至少 10 位，须包含两个大写字母、一个特殊字符、两个数字和三个小写字母。",
    "form": "表单", "Contains (insensitive)": "包含（不区分大小写）", "In": "属于", "Not In": "不属于",
    "Either select a role or a group": "请选择角色或用户组",
    "List Groups": "用户组列表", "Edit User Information": "编辑用户信息",
    "User information changed": "用户信息已修改", "Groups": "用户组",
    "The user's password for authentication": "用户登录密码",
    "User(s) exists in the role, cannot delete": "该角色下还有用户，不能删除",
    "Show Group": "查看用户组", "Add Group": "新增用户组", "Edit Group": "编辑用户组",
    "User(s) exists in the group, cannot delete": "该用户组下还有用户，不能删除",
    "Invalid state signature": "无效的状态签名", "Sign In with ": "登录方式：",
    "Security": "安全", "List Users": "用户列表", "List Roles": "角色列表",
    "Action Log": "操作日志", "Permissions": "权限", "Views/Menus": "视图/菜单",
    "Permission on Views/Menus": "视图/菜单权限", "User's Statistics": "用户统计",
}


def first(msgid):
    return msgid[0] if isinstance(msgid, tuple) else msgid


def is_chinese(msgid):
    return bool(CJK.search(first(msgid)))


def placeholders(text):
    return Counter(PLACEHOLDER.findall(text or ""))


def placeholder_problem(msg):
    """A description when a translation's placeholders differ from its msgid's."""
    ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
    strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
    want = placeholders(ids[-1]) | placeholders(ids[0])
    for text in strings:
        if text and placeholders(text) != want:
            return (f"placeholders {sorted(placeholders(text).elements())} ≠ msgid's "
                    f"{sorted(want.elements())}")
    return None


def extract():
    """The template catalogue of the current sources (in memory)."""
    from babel.messages.frontend import CommandLineInterface

    with tempfile.TemporaryDirectory() as tmp:
        pot = Path(tmp) / "messages.pot"
        CommandLineInterface().run([
            "pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l",
            "-k", "lazy_gettext", "-k", "_", "-k", "N_", "--no-location", "--omit-header",
            "-o", str(pot), str(ROOT / "app")])
        with open(pot, "rb") as fh:
            return read_po(fh)


def load(locale):
    path = PO[locale]
    if path.exists():
        with open(path, "rb") as fh:
            return read_po(fh, locale=locale)
    return Catalog(locale=locale, project="CRM", fuzzy=False)


def fab_translations():
    import flask_appbuilder

    path = Path(flask_appbuilder.__file__).parent / "translations/zh/LC_MESSAGES/messages.po"
    with open(path, "rb") as fh:
        return read_po(fh)


def update_zh(pot):
    """Chinese: every Chinese msgid is its own translation; English ones from FAB/FAB_GAPS."""
    catalog = load("zh")
    catalog.update(copy.deepcopy(pot), no_fuzzy_matching=True)  # (update adopts its messages)
    fab = fab_translations()
    for msgid, text in FAB_GAPS.items():
        if msgid not in catalog:
            catalog.add(msgid, text)
    missing = []
    for msg in catalog:
        if not msg.id:
            continue
        msg.flags.discard("fuzzy")
        if isinstance(msg.id, tuple):
            if not any(msg.string):
                msg.string = msg.id if is_chinese(msg.id) else msg.string
            continue
        if msg.id in FAB_GAPS:
            msg.string = FAB_GAPS[msg.id]
        elif is_chinese(msg.id):
            msg.string = msg.id
        elif not msg.string:
            if msg.id in fab and fab[msg.id].string:
                msg.string = fab[msg.id].string
            else:
                missing.append(msg.id)
    catalog.obsolete.clear()  # the catalogue matches the sources
    return catalog, missing


def check_en(catalog):
    """{"missing": [...], "fuzzy": [...], "placeholders": [...], "chinese": [...]} of en."""
    problems = {"missing": [], "fuzzy": [], "placeholders": [], "chinese": []}
    for msg in catalog:
        if not msg.id or not is_chinese(msg.id):
            continue  # the header, and English msgids (FAB's own) that need nothing
        strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
        if not all(strings) or strings[0] == first(msg.id):   # the zh text is no English
            problems["missing"].append(msg.id)
        elif msg.fuzzy:
            problems["fuzzy"].append(f"{first(msg.id)}  →  suggested: {strings[0]}")
        if (problem := placeholder_problem(msg)):
            problems["placeholders"].append(f"{first(msg.id)}  →  {problem}")
        if any(CJK.search(s or "") for s in strings):
            problems["chinese"].append(first(msg.id))
    return problems


# English translations that keep some Chinese on purpose: they quote data values
# (dictionary items, the stored gender values) the user has to type.
CHINESE_ALLOWED_IN_EN = {
    "%(field)s请填写数据字典中的条目文字，例如“北京”。",
    "性别只能是“男”或“女”。",
    "服务时限的条目应写成“服务类型/优先级”，例如“咨询/紧急”。",  # quotes dictionary data
}


def update_en(pot):
    catalog = load("en")
    # fuzzy matching on: a reworded msgid keeps its old English, marked for review
    catalog.update(copy.deepcopy(pot), no_fuzzy_matching=False)
    dropped = len(catalog.obsolete)
    catalog.obsolete.clear()
    catalog.fuzzy = False
    return catalog, dropped


def write(locale, catalog, **kw):
    with open(PO[locale], "wb") as fh:
        write_po(fh, catalog, omit_header=False, no_location=True, **kw)


def compile_all():
    """Compile every translations/<locale>/LC_MESSAGES/messages.po (fuzzy entries left out)."""
    for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")):
        with open(po, "rb") as fh:
            catalog = read_po(fh, locale=po.parent.parent.name)
        with open(po.with_suffix(".mo"), "wb") as fh:
            write_mo(fh, catalog, use_fuzzy=False)


def report(title, items):
    if items:
        print(f"{title} ({len(items)}):")
        for item in items:
            print(f"  {first(item)!r}" if not isinstance(item, str) or "→" not in item
                  else f"  {item}")
    return bool(items)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report only, write nothing")
    args = parser.parse_args(argv)

    pot = extract()
    zh, zh_missing = update_zh(pot)
    en, dropped = update_en(pot)
    if not args.check:
        write("zh", zh, width=100)
        # sorted, unwrapped: one entry per msgid, easy to extend and to diff
        write("en", en, width=0, sort_output=True)
        compile_all()

    problems = check_en(en)
    chinese = [m for m in problems["chinese"] if m not in CHINESE_ALLOWED_IN_EN]
    rel = PO["en"].relative_to(ROOT)
    failed = False
    failed |= report("untranslated English msgids in zh (add them to FAB_GAPS in tools/i18n.py)",
                     zh_missing)
    failed |= report(f"Chinese msgids without an English translation — fill their msgstr "
                     f"in {rel}", problems["missing"])
    failed |= report(f"fuzzy English (a new or reworded msgid got the English of a similar "
                     f"one) — correct the msgstr, then delete the '#, fuzzy' line in {rel}", problems["fuzzy"])
    failed |= report("translations whose placeholders differ from the msgid's",
                     problems["placeholders"])
    report("warning: English translations containing Chinese (allow them in "
           "CHINESE_ALLOWED_IN_EN if they quote data)", chinese)
    if dropped:
        print(f"{dropped} obsolete English entries dropped (their msgid left the sources)")
    n = sum(1 for m in en if m.id and is_chinese(m.id))
    if failed:
        print("i18n: FAILED" + (" (nothing written: --check)" if args.check else ""))
        return 1
    print(f"catalogues ok: zh {len(zh)} entries, en {n} Chinese msgids all translated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
