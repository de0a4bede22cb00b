#!/usr/bin/env bash
# The real-music development set: freely licensed game soundtracks from Debian's archive, unpacked into
# data/music/<package>/ (ignored by git: never commit audio). Train and evaluate on these only; the archive's
# other music stays unheard by the Brain. Licences are listed in checkpoints/README.md.
# Usage: scripts/fetch_music.sh [DEST]   (default data/music)
#   then: uv run synesthete train diffusion --music data/music ...   /   uv run synesthete eval --music data/music
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-data/music}"
PACKAGES=(hyperrogue-music nexuiz-music singularity-music planetblupi-music-ogg fb-music-high)

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "fetch_music: needs apt-get and dpkg (a Debian or Ubuntu machine)" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1) || {
    echo "fetch_music: apt-get download failed; run 'apt-get update' first (as root) and retry" >&2
    exit 1
}
for deb in "$work"/*.deb; do
    dpkg -x "$deb" "$work/root"
done
mkdir -p "$DEST"
share="$work/root/usr/share"
copy() {  # copy SRC... into DEST/NAME
    local name="$1"; shift
    mkdir -p "$DEST/$name"
    cp "$@" "$DEST/$name/"
}
copy hyperrogue "$share"/hyperrogue/music/*.ogg
copy planetblupi "$share"/planetblupi/music/*.ogg
find "$share/games/singularity/music" -name '*.ogg' -exec cp {} "$work/" \;
copy singularity "$work"/*.ogg
copy frozen-bubble "$share"/games/frozen-bubble/snd/*.xm
# Nexuiz keeps its soundtrack in a zip archive (music.pk3).
mkdir -p "$DEST/nexuiz"
python3 - "$share/games/nexuiz/data/music.pk3" "$DEST/nexuiz" <<'PY'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1]) as archive:
    for name in archive.namelist():
        if name.lower().endswith(".ogg"):
            Path(sys.argv[2], Path(name).name).write_bytes(archive.read(name))
PY
count=$(find "$DEST" -type f | wc -l)
echo "fetch_music: $count files under $DEST ($(du -sh "$DEST" | cut -f1))"
