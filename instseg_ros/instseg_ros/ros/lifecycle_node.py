"""``yolact_lifecycle_node``: the yolact node as a managed (lifecycle) node.

Same parameters, topics and messages as ``yolact_node``; the work happens on the transitions:

  configure  : load the model (weights, preset, device); a startup fault fails the transition
               with one error line and the node stays unconfigured
  activate   : create publishers, subscriptions, timers and the inference worker
  deactivate : remove them again; inference stops, the model stays loaded
  cleanup    : free the model
  shutdown   : all of the above

``ros2 launch instseg_ros yolact.launch.py lifecycle:=true`` configures and activates it.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from instseg_ros.core.throttle import KindThrottle

from instseg_ros.ros.cli import node_help, wants_help
from instseg_ros.ros.entry import rcl_message, spin_node
from instseg_ros.ros.errors import StartupError
from instseg_ros.ros.node import YolactRuntime, declare_parameters
from instseg_ros.ros.params import help_rows


class YolactLifecycleNode(LifecycleNode):
    """Managed YOLACT node: parameters are declared at construction, the rest on transitions."""

    def __init__(self, **kwargs):
        super().__init__('yolact', **kwargs)
        self.runtime = YolactRuntime(self, declare_parameters(self))
        self._active = False
        self._refusals = KindThrottle(period_s=5.0)
        self._guard_change_state()

    def _guard_change_state(self) -> None:
        """Refuse a transition the current state does not offer (``success: false`` and one
        throttled warning) instead of letting rclpy's state machine raise in the service
        callback, which kills the node (rclpy issue 1209)."""
        service = self._service_change_state
        handle = service.callback

        def change_state(request, response):
            available = self.available_transitions()
            wanted = request.transition
            if (wanted.label and wanted.label not in available.values()) or \
                    (not wanted.label and wanted.id not in available):
                self._refuse(wanted, available)
                response.success = False
                return response
            try:
                return handle(request, response)
            except RuntimeError as exc:  # rcl's RCLError: refused by the state machine after all
                self._refuse(wanted, available, rcl_message(exc))
                response.success = False
                return response

        service.callback = change_state

    def available_transitions(self) -> dict[int, str]:
        """Transitions the current state offers: id -> label."""
        return {int(t[0]): str(t[1]) for t in self._state_machine.available_transitions}

    def _refuse(self, wanted, available: dict[int, str], reason: str = '') -> None:
        suppressed = self._refusals.admit('transition')
        if suppressed is None:
            return
        asked = repr(wanted.label) if wanted.label else f'id {wanted.id}'
        state = self._state_machine.current_state[1]
        offered = ', '.join(f'{label} ({tid})' for tid, label in sorted(available.items())) or 'none'
        more = f' ({suppressed} similar refusals not logged)' if suppressed else ''
        why = reason or f"not available in state '{state}'"
        self.get_logger().warning(f'transition {asked} refused: {why}; available: {offered}{more}')

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.runtime.configure()
        except StartupError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001 - rclpy would turn it into ERROR without a word
            self.get_logger().error(f'configure failed: {type(exc).__name__}: '
                                    f'{" ".join(str(exc).split())}')
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.activate()
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.runtime.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def _stop(self) -> None:
        if self._active:
            self.runtime.deactivate()
            self._active = False

    def destroy_node(self):
        self._stop()
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point (executable ``yolact_lifecycle_node``); exit code 2 on a bad parameter."""
    if wants_help(args):
        print(node_help('yolact_lifecycle_node', __doc__, help_rows(),
                        'yolact_lifecycle_node --ros-args -r __node:=yolact '
                        '-p weights:=/path/yolact_base_54_800000.pth'))
        return 0
    return spin_node(YolactLifecycleNode, args, fatal=(StartupError,), name='yolact')


if __name__ == '__main__':
    sys.exit(main())
