"""User factories for the gate's sensitivity checks: the released cU-Net at its small
configuration, with `extra_ops` more elementwise additions after every ODE-function evaluation
(a change of the work a forward does that leaves every count - parameters, MACs, NFE - equal).

    python -m bench check --update --models tests/gate_factories.py:cunet_extra_ops ...
    python -m bench check --models tests/gate_factories.py:cunet_extra_ops \
        --override tests/gate_factories.py:cunet_extra_ops:extra_ops=1
"""

from __future__ import annotations

from torch import nn

from models.source import model_source


def cunet_extra_ops(extra_ops: int = 0, channels: int = 3, width: int = 4) -> nn.Module:
    net = model_source("cunet", {"width": width}).with_channels(channels).build()

    def add_zero(module: nn.Module, inputs: tuple, output):
        for _ in range(extra_ops):
            output = output + 0.0
        return output

    if extra_ops:
        for _, function in net.ode_functions():
            function.register_forward_hook(add_zero)
    return net
