"""The offline bundle: wheels for a target machine, the user's recipe and data, install scripts.

`build.build_bundle` collects it (pip does every resolution and download, as a subprocess),
`check.check_bundle` installs it into a fresh virtual environment with no registry and runs
the demo from it. `target` names the machine the wheels are for, `pip` runs pip and reads its
report, `kernels` handles the GPU kernel packages that ship only as source, `scripts` writes
install.sh / run.sh / the Kaggle notebook, `manifest` lists every file with its sha256.

May import: `formats` and `training` (a bundled recipe is validated before it ships).
"""
