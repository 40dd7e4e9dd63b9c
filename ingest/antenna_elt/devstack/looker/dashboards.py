"""The LookML dashboards: one twin for each Superset dashboard in dashboards/dashboards/.

Each tile shows what the Superset chart of the same title shows, from the same dbt model
(the explore of the same name): no SQL here either, only fields of the generated views.
The layout is Looker's newspaper grid (24 columns); the tiles of a row share its height.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML comes with dbt-core

from antenna_elt.devstack.looker.lookml import MODEL_NAME

GRID_COLUMNS = 24


@dataclass(frozen=True)
class Tile:
    title: str
    explore: str
    type: str
    fields: tuple[str, ...]
    """field names in the explore's view: dimensions, <dimension_group>_<timeframe>, measures"""
    width: int
    pivots: tuple[str, ...] = ()
    filters: dict[str, str] = field(default_factory=dict)
    sorts: tuple[str, ...] = ()
    """field names, with ` desc` for a descending sort"""
    limit: int = 500
    options: dict[str, Any] = field(default_factory=dict)
    """visualisation settings, written as they are"""

    @property
    def name(self) -> str:
        return "_".join(re.findall(r"[a-z0-9]+", self.title.lower()))


@dataclass(frozen=True)
class Dashboard:
    name: str
    title: str
    superset_slug: str
    description: str
    rows: tuple[tuple[int, tuple[Tile, ...]], ...]
    """(height, tiles) of each row, top to bottom"""

    @property
    def tiles(self) -> list[Tile]:
        return [tile for _, tiles in self.rows for tile in tiles]


WINDOW = "window_start_minute5"
LINE = {"show_legend": True, "legend_position": "top"}

NETWORK_LIVE = Dashboard(
    name="network_live",
    title="Network, live",
    superset_slug="network-live",
    description=(
        "The last hour of the network, 5-minute windows, counted back from the newest event "
        "(dbt models rpt_*_last_hour and fct_devices_active_recent)."
    ),
    rows=(
        (
            6,
            (
                Tile(
                    "Devices active in the last 10 minutes",
                    "fct_devices_active_recent",
                    "single_value",
                    ("max_devices_active",),
                    width=6,
                    options={"single_value_title": "before the newest event"},
                ),
                Tile(
                    "Share of heavy users",
                    "rpt_network_activity_last_hour",
                    "single_value",
                    (WINDOW, "max_heavy_user_share"),
                    width=6,
                    sorts=(f"{WINDOW} desc",),
                    options={"single_value_title": "newest window", "show_comparison": False},
                ),
                Tile(
                    "Devices connected, connecting and disconnecting",
                    "rpt_network_activity_last_hour",
                    "looker_line",
                    (
                        WINDOW,
                        "max_devices_connected",
                        "sum_devices_connecting",
                        "sum_devices_disconnecting",
                    ),
                    width=12,
                    sorts=(WINDOW,),
                    options=LINE,
                ),
            ),
        ),
        (
            8,
            (
                Tile(
                    "Bytes per antenna (5-minute windows)",
                    "rpt_network_bytes_last_hour",
                    "looker_line",
                    (WINDOW, "label", "sum_bytes"),
                    width=12,
                    pivots=("label",),
                    filters={"type": "antenna_bytes_total"},
                    sorts=(WINDOW,),
                    options=LINE,
                ),
                Tile(
                    "Bandwidth in use per antenna (bytes/s)",
                    "rpt_antenna_bandwidth_last_hour",
                    "looker_line",
                    (WINDOW, "antenna", "sum_bytes_per_second"),
                    width=12,
                    pivots=("antenna",),
                    sorts=(WINDOW,),
                    options=LINE,
                ),
            ),
        ),
        (
            8,
            (
                Tile(
                    "Bytes per app (5-minute windows)",
                    "rpt_network_bytes_last_hour",
                    "looker_column",
                    (WINDOW, "label", "sum_bytes"),
                    width=12,
                    pivots=("label",),
                    filters={"type": "app_bytes_total"},
                    sorts=(WINDOW,),
                    options={**LINE, "stacking": "normal"},
                ),
                Tile(
                    "Bytes per user, last hour",
                    "rpt_network_bytes_last_hour",
                    "looker_grid",
                    ("label", "sum_bytes"),
                    width=12,
                    filters={"type": "id_bytes_total"},
                    sorts=("sum_bytes desc",),
                    limit=100,
                ),
            ),
        ),
    ),
)

HOUR = "hour_start_hour"

HOURLY_USAGE_QUOTAS = Dashboard(
    name="hourly_usage_quotas",
    title="Hourly usage and quotas",
    superset_slug="hourly-usage-quotas",
    description=(
        "Bytes per hour by antenna, user email and app; user-hours over quota "
        "(dbt models rpt_bytes_hourly and user_quota_limit)."
    ),
    rows=(
        (
            8,
            (
                Tile(
                    "User-hours over quota",
                    "user_quota_limit",
                    "single_value",
                    ("count",),
                    width=6,
                    options={"single_value_title": "in user_quota_limit"},
                ),
                Tile(
                    "Users over quota (highest usage first)",
                    "user_quota_limit",
                    "looker_grid",
                    ("email", "usage", "quota", "timestamp_minute"),
                    width=18,
                    sorts=("usage desc",),
                    limit=1000,
                ),
            ),
        ),
        (
            8,
            (
                Tile(
                    "Bytes per hour by antenna",
                    "rpt_bytes_hourly",
                    "looker_column",
                    (HOUR, "label", "sum_bytes"),
                    width=12,
                    pivots=("label",),
                    filters={"type": "antenna_bytes_total"},
                    sorts=(HOUR,),
                    options=LINE,
                ),
                Tile(
                    "Bytes per hour by app",
                    "rpt_bytes_hourly",
                    "looker_column",
                    (HOUR, "label", "sum_bytes"),
                    width=12,
                    pivots=("label",),
                    filters={"type": "app_bytes_total"},
                    sorts=(HOUR,),
                    options=LINE,
                ),
            ),
        ),
        (
            8,
            (
                Tile(
                    "Bytes per hour by user email",
                    "rpt_bytes_hourly",
                    "looker_column",
                    (HOUR, "label", "sum_bytes"),
                    width=24,
                    pivots=("label",),
                    filters={"type": "mail_bytes_total"},
                    sorts=(HOUR,),
                    options={**LINE, "stacking": "normal"},
                ),
            ),
        ),
    ),
)

DASHBOARDS = (NETWORK_LIVE, HOURLY_USAGE_QUOTAS)


def _qualified(explore: str, name: str) -> str:
    field_name, _, direction = name.partition(" ")
    return f"{explore}.{field_name}" + (f" {direction}" if direction else "")


def _element(tile: Tile, row: int, col: int, height: int) -> dict[str, Any]:
    element: dict[str, Any] = {
        "name": tile.name,
        "title": tile.title,
        "model": MODEL_NAME,
        "explore": tile.explore,
        "type": tile.type,
        "fields": [_qualified(tile.explore, f) for f in tile.fields],
    }
    if tile.pivots:
        element["pivots"] = [_qualified(tile.explore, f) for f in tile.pivots]
    if tile.filters:
        element["filters"] = {_qualified(tile.explore, k): v for k, v in tile.filters.items()}
    if tile.sorts:
        element["sorts"] = [_qualified(tile.explore, f) for f in tile.sorts]
    element["limit"] = tile.limit
    element.update(tile.options)
    element.update({"row": row, "col": col, "width": tile.width, "height": height})
    return element


def dashboard_file(dashboard: Dashboard, header: str) -> str:
    elements, row = [], 0
    for height, tiles in dashboard.rows:
        col = 0
        for tile in tiles:
            elements.append(_element(tile, row, col, height))
            col += tile.width
        if col > GRID_COLUMNS:
            raise ValueError(f"{dashboard.name}: a row is {col} columns wide (max {GRID_COLUMNS})")
        row += height
    document = [
        {
            "dashboard": dashboard.name,
            "title": dashboard.title,
            "description": dashboard.description,
            "layout": "newspaper",
            "preferred_viewer": "dashboards-next",
            # Superset refreshes every 10 s; the Looker twin every minute (less database load)
            "refresh": "1 minute",
            "elements": elements,
        }
    ]
    return header + yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
