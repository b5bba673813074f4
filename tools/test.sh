#!/usr/bin/env sh
# The whole test suite, set-up included: the README's test command and what CI runs.
#
#   sh tools/test.sh                      # set-up, then every test
#   sh tools/test.sh tests/test_dds.py -x # set-up, then pytest with these arguments
#   HIWM_TEST_SETUP=0 sh tools/test.sh    # skip the installs (already done)
#
# Set-up: Debian's chromium (browser tests) and Mesa (MuJoCo rendering), the ROS 2 Jazzy core from ../shared/ros2 when it is
# there (CI), the Python packages. Then, where a ROS 2 tree is found (sourced already, or under
# /opt/ros), the workspace is built with colcon and sourced, so the tests run on both backends
# (the DDS backend and rclpy) and through `ros2 launch` / `ros2 run`; without one, on the DDS
# backend only.
set -eu
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if [ "${HIWM_TEST_SETUP:-1}" != 0 ]; then
  # one after the other: each uses apt, which holds one dpkg lock
  sh tools/install-browser.sh
  sh tools/install-mujoco.sh  # Mesa for MuJoCo's offscreen rendering (the arm task)
  if [ -f ../shared/ros2/install.sh ]; then
    sh ../shared/ros2/install.sh
  fi
  python3 -m pip install -q -e '.[test]'
fi

if [ -z "${ROS_DISTRO:-}" ]; then
  for setup in /opt/ros/jazzy/setup.sh /opt/ros/*/setup.sh; do
    if [ -f "$setup" ]; then
      set +u  # ROS setup scripts read unset variables
      . "$setup"
      set -u
      break
    fi
  done
fi

if [ -n "${ROS_DISTRO:-}" ]; then
  # The DDS backend speaks rmw_cyclonedds's wire format; the interop tests need that RMW.
  export RMW_IMPLEMENTATION=rmw_cyclonedds_cpp
  echo "ROS 2 $ROS_DISTRO found: building the workspace with colcon"
  colcon build --symlink-install --base-paths . msgs --cmake-args -DBUILD_TESTING=OFF
  set +u
  . install/setup.sh
  set -u
  export HIWM_REQUIRE_ROS=1  # a ROS-related skip is a failure from here on
  # this checkout's sources first, whatever else is installed
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no ROS 2 found: the tests run on the DDS backend only"
fi

exec python3 -m pytest -q "$@"
