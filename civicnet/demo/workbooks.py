"""Synthetic quarterly expenditure reports of community work stations, one XLSX per community.

Each file is what a work station's spreadsheet looks like (the Chinese headers the push feed
`community_expenditures` maps) for 2021 Q2: 4-6 items in each of the six categories. The first
file also carries ONE row anchored in a different community, which the gateway must quarantine
as `outside_jurisdiction` (a community may send only its own rows). One planted row among at
least 25 stays under the quality gate's 5 % quarantine share, so the rest of the batch applies.
"""

from __future__ import annotations

import random
from pathlib import Path

from schemas.divisions import Registry
from schemas.homefiles import atomic_target
from schemas.layout import feeds_folder

YEAR, QUARTER = 2021, 2
HEADERS = ("支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明")
# category as the station writes it → typical amount of one item in yuan (the feed maps the words)
CATEGORIES: dict[str, float] = {"人员": 42000.0, "办公": 3500.0, "活动": 8000.0, "设施": 15000.0,
                                "服务": 6000.0, "其他": 1200.0}
NOTES: dict[str, tuple[str, ...]] = {
    "人员": ("工作站专职人员工资", "社保公积金", "绩效奖金"),
    "办公": ("办公用品", "打印耗材", "网络通信费"),
    "活动": ("重阳敬老活动", "社区文化节", "青少年暑期活动"),
    "设施": ("活动室设备维修", "健身器材更换", "消防器材"),
    "服务": ("家政服务补贴", "法律咨询服务", "心理咨询服务"),
    "其他": ("会议场地", "宣传资料", "杂项"),
}
PLANTED_SEQUENCE = 999


def expenditure_id(code: str, sequence: int) -> str:
    """E<community code>-<year>Q<quarter>-<nnn>, the contract's key pattern."""
    return f"E{code}-{YEAR}Q{QUARTER}-{sequence:03d}"


def expenditure_rows(code: str, rng: random.Random) -> list[tuple[str, str, int, int, str, float, str]]:
    """One community's items of the quarter, 4-6 per category, numbered from 001."""
    rows: list[tuple[str, str, int, int, str, float, str]] = []
    for category, typical in CATEGORIES.items():
        for _ in range(rng.randint(4, 6)):
            amount = round(typical * rng.lognormvariate(0.0, 0.35), 2)
            rows.append((expenditure_id(code, len(rows) + 1), code, YEAR, QUARTER, category, amount,
                         rng.choice(NOTES[category])))
    return rows


def _foreign_community(registry: Registry, own: str, communities: list[str]) -> str:
    """A community other than `own`, in another street if there is one (so the row would travel far)."""
    others = [c for c in [*communities, *(d.code for d in registry.by_tier("community"))] if c != own]
    street = registry.get(own).parent_code
    return next((c for c in others if registry.get(c).parent_code != street), others[0])


def _write_xlsx(path: Path, rows: list[tuple[str, str, int, int, str, float, str]]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"{YEAR}年第{QUARTER}季度"
    sheet.append(HEADERS)
    for row in rows:
        sheet.append(row)
    with atomic_target(path) as tmp:
        book.save(tmp)


def write_expenditure_files(home: Path, registry: Registry, communities: list[str], seed: int) -> dict[str, Path]:
    """Write `<home>/feeds/communities/<code>/expenditures-2021Q2.xlsx` for each community; the
    first file also has one row of another community (planted: `outside_jurisdiction`)."""
    rng = random.Random(seed)
    files: dict[str, Path] = {}
    for index, code in enumerate(communities):
        registry.get(code)  # an unknown code fails here, naming the vintage
        rows = expenditure_rows(code, rng)
        if index == 0:
            foreign = _foreign_community(registry, code, communities)
            rows.append((expenditure_id(foreign, PLANTED_SEQUENCE), foreign, YEAR, QUARTER, "活动", 5000.0,
                         "误填：其他社区的活动支出"))
        files[code] = feeds_folder(home) / "communities" / code / f"expenditures-{YEAR}Q{QUARTER}.xlsx"
        _write_xlsx(files[code], rows)
    return files
