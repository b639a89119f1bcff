#!/usr/bin/env bash
# Make the tests' Python venvs ahead of time (CI runs this in the background
# while cargo builds): the same folders and marker tests/common/venv.rs uses,
# target/tmp/<name>-venv with installed.sha256 = sha256 of the requirements
# file, so the tests find them installed and reuse them. A venv that fails
# here is left without its marker; the test then installs it itself and
# reports the pip error.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/tmp
status=0
while read -r name req; do
  dir="target/tmp/$name-venv"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$dir/installed.sha256" 2>/dev/null)" = "$want" ]; then
    echo "venv $name: already installed"
    continue
  fi
  rm -rf "$dir"
  start=$SECONDS
  if python3 -m venv "$dir" &&
     "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >"$dir.log" 2>&1; then
    printf %s "$want" >"$dir/installed.sha256"
    echo "venv $name: installed $req in $((SECONDS - start)) s"
  else
    echo "venv $name: pip install -r $req failed (the test will retry); last lines:"
    tail -n 5 "$dir.log" 2>/dev/null
    status=1
  fi
done <<'LIST'
mlflow tests/interop/mlflow-requirements.txt
clients tests/clients/requirements.txt
dvc tests/interop/dvc-requirements.txt
ray tests/interop/ray-requirements.txt
LIST
exit $status
