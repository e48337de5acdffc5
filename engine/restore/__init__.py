"""Restore, engine side: safe extraction of an archive's volumes into staging
directories (extract.py, checks.py) and the swap of staged data into a
volume with rollback and crash recovery (volume_swap.py)."""

from engine.restore.extract import ExtractReport, VolumeStats, extract_volumes
from engine.restore.volume_swap import (
    SwapHandle,
    discard_stage,
    recover_volume,
    stage_dir_for,
    swap_in,
)

__all__ = [
    "ExtractReport",
    "SwapHandle",
    "VolumeStats",
    "discard_stage",
    "extract_volumes",
    "recover_volume",
    "stage_dir_for",
    "swap_in",
]
