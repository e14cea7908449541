"""Write infra/plots/offline.html: DVC's plots page with Vega, Vega-Lite and vega-embed inlined,
so `dvc plots show` (which .dvc/config points at this template) renders with no network.

DVC's own page loads these three from a CDN, at the versions its Vega specs target (the pins
below, as dvc_render/vega.py names them). Run `make plots-template` to rebuild after a DVC
upgrade moves them; it needs npm once, the page never does.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {  # npm package@version: its browser build inside the package
    "vega@5.20.2": "package/build/vega.min.js",
    "vega-lite@5.2.0": "package/build/vega-lite.min.js",
    "vega-embed@6.18.2": "package/build/vega-embed.min.js",
}
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
{inlined}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(target: Path) -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as folder:
        for package, member in PACKAGES.items():
            packed = subprocess.run(
                ["npm", "pack", "--silent", package],
                cwd=folder,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            with tarfile.open(Path(folder) / packed) as archive:
                code = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            name, version = package.rsplit("@", 1)
            code = code.replace("</script", "<\\/script")  # cannot end the tag early
            # BSD-3-Clause (University of Washington Interactive Data Lab): notice kept.
            scripts.append(
                f"    <!-- {name} {version}, BSD-3-Clause, https://github.com/vega/{name} -->\n"
                f"    <script>{code}</script>"
            )
    # {refresh_tag} and {plot_divs} stay for DVC to fill; no {scripts}: nothing from a CDN.
    page = PAGE.replace("{inlined}", "\n".join(scripts))
    target.write_text(page, encoding="utf8")
    print(f"{target}: {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("offline.html"))
