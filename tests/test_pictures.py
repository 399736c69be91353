"""flair-zarr show / stats write PNG pictures of a store."""

from __future__ import annotations

from PIL import Image

import flair_zarr
from flair_zarr.cli import main


def test_show_writes_a_contact_sheet(local_store, tmp_path, capsys):
    ds = flair_zarr.open_dataset(local_store)
    user = max(ds.flair.users(), key=lambda u: ds.flair.user(u).sizes["sample"])
    out = tmp_path / "sheet.png"
    assert main(["show", local_store, user, "-o", str(out), "--max-images", "9"]) == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > 400 and png.size[1] > 200
    shown = min(9, ds.flair.user(user).sizes["sample"])
    assert f"{shown} images of user {user}" in capsys.readouterr().out


def test_show_names_an_unknown_user(local_store, tmp_path, capsys):
    assert main(["show", local_store, "nobody@N00", "-o", str(tmp_path / "x.png")]) == 1
    assert "nobody@N00" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_stats_writes_a_png(local_store, tmp_path):
    out = tmp_path / "stats.png"
    assert main(["stats", local_store, "-o", str(out)]) == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == (1600, 480)
