"""Neural-network modules of diffgates: LogicLayer, LogicConv2d, OrPool2d, GroupSum and their wiring."""
from .connections import CONNECTION_KINDS, make_connections
from .group_sum import GroupSum
from .logic_conv import LogicConv2d, OrPool2d, tree_connections
from .logic_layer import GradFactor, LogicLayer
from .sampling import GATE_LAYERS, soft_sampling

__all__ = ["LogicLayer", "LogicConv2d", "OrPool2d", "tree_connections", "GroupSum", "GradFactor", "make_connections", "CONNECTION_KINDS", "soft_sampling",
           "GATE_LAYERS"]
