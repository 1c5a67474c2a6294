"""Taobao UserBehavior (format ``taobao``): Alibaba's click log (Zhu et al. 2018). A CSV
without a header: user, item, category, behaviour (pv, cart, fav, buy), unix time.

The log comes from China, so every event gets tz_offset_min = 480 (unless a mapped column
says otherwise); its unix times are absolute and need no shift.
"""

from __future__ import annotations

from pathlib import Path

from ... import schema
from ..layout import TextLayout, column_all, is_int
from ..types import Plan, Sniff
from .base import CHINA_TZ_MIN, Format, fixed_offset

BEHAVIORS = {"pv", "cart", "fav", "buy"}


def _recognise(lay: TextLayout, path: Path) -> str | None:
    if (not lay.has_header and lay.delimiter == "," and len(lay.columns) == 5
            and column_all(lay.rows, 3, lambda v: v.strip() in BEHAVIORS)
            and column_all(lay.rows, 4, is_int)):
        return ""
    return None


def _fit(sn: Sniff) -> str | None:
    return "" if not sn.has_header and len(sn.columns) == 5 and sn.delimiter == "," else None


def _rules(plan: Plan, sn: Sniff, path: Path, user_set: set[str]) -> None:
    fixed_offset(plan, CHINA_TZ_MIN)


FORMAT = Format(
    name="taobao", label="Taobao UserBehavior (Alibaba)", recognise=_recognise, fit=_fit,
    expect="5 comma-separated columns (user, item, category, behavior, unix time)",
    names={"": ["user_id", "item_id", "category_id", "behavior", "timestamp"]},
    columns={"": {schema.USER: ("userid",), schema.ITEM: ("itemid",),
                  schema.TS: ("timestamp",), schema.BEHAVIOR: ("behavior",),
                  schema.CATEGORY: ("categoryid",)}},
    rules=_rules)
