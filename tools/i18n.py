"""Rebuild the Chinese catalogue: extract → update → fill → compile.

Our source strings are written in Chinese, so the zh translation of a Chinese
msgid is the msgid itself (filled automatically). English msgids come from FAB
(its zh catalogue is from 2015 and misses strings) or our templates; they are
translated in FAB_GAPS below. Run: ``.venv/bin/python tools/i18n.py`` (or
``make i18n``). It fails when an English msgid has no translation.
"""
import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "translations/zh/LC_MESSAGES/messages.po"
POT = ROOT / "translations/messages.pot"
CJK = re.compile(r"[\u4e00-\u9fff]")

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
FAB_CATALOGUE = None


def fab_translations():
    import flask_appbuilder

    path = Path(flask_appbuilder.__file__).parent / "translations/zh/LC_MESSAGES/messages.po"
    with open(path, "rb") as fh:
        return read_po(fh)


def main():
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(ROOT / "babel.cfg"), "-k", "_l", "-k", "lazy_gettext", "-k", "_",
                    "--no-location", "--omit-header", "-o", str(POT), str(ROOT / "app")],
                   check=True, capture_output=True)
    with open(POT, "rb") as fh:
        pot = read_po(fh)
    with open(PO, "rb") as fh:
        catalog = read_po(fh, locale="zh")
    catalog.update(pot, no_fuzzy_matching=True)
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
                msg.string = msg.id if CJK.search(msg.id[0]) else msg.string
            continue
        if msg.id in FAB_GAPS:
            msg.string = FAB_GAPS[msg.id]
        elif CJK.search(msg.id):
            msg.string = msg.id
        elif not msg.string:
            if msg.id in fab and fab[msg.id].string:
                msg.string = fab[msg.id].string
            else:
                missing.append(msg.id)
    # drop obsolete entries so the catalogue matches the sources
    catalog.obsolete.clear()
    with open(PO, "wb") as fh:
        write_po(fh, catalog, width=100, omit_header=False, no_location=True)
    POT.unlink()
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "compile", "-f", "-d",
                    str(ROOT / "translations"), "-D", "messages"], check=True, capture_output=True)
    if missing:
        print("untranslated English msgids (add them to FAB_GAPS):", *missing, sep="\n  ")
        return 1
    print(f"catalogue ok: {len(catalog)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
