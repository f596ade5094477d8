"""The requantization memory: one `CHANNEL_PARAMS` entry per output channel.

Written one channel at a time (LOAD_REQUANT), read `drain_width` channels at a time: with a
paired drain the even and odd channels live in two memories of half the depth, read at the
same address (channel // 2), so a pair of adjacent channels comes out in one read.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from golden.config import ArrayConfig

from .requant import CHANNEL_PARAMS

__all__ = ["ParamMemory"]


class ParamMemory(wiring.Component):
    """`config.requant_depth` channels' parameters.

    Ports
    -----
    write : Out(WritePort.Signature(addr_width, CHANNEL_PARAMS))
        One channel's parameters (address: the channel), as a memory's write port.
    read : Out(ReadPort.Signature(addr_width, ArrayLayout(CHANNEL_PARAMS, drain_width)))
        Channels `drain_width * addr` and the next one (a paired drain), or channel `addr`;
        the data a cycle after the address, as a memory's read port.
    """

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        width = config.drain_width
        super().__init__({
            "write": Out(WritePort.Signature(addr_width=ceil_log2(config.requant_depth),
                                             shape=CHANNEL_PARAMS)),
            "read": Out(ReadPort.Signature(
                addr_width=ceil_log2(config.requant_depth // width),
                shape=data.ArrayLayout(CHANNEL_PARAMS, width))),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        width = self._config.drain_width
        depth = self._config.requant_depth // width
        for bank in range(width):
            memory = Memory(shape=CHANNEL_PARAMS, depth=depth, init=[])
            m.submodules[f"bank_{bank}"] = memory
            write, read = memory.write_port(), memory.read_port()
            if width == 1:
                m.d.comb += [write.addr.eq(self.write.addr), write.en.eq(self.write.en)]
            else:
                m.d.comb += [write.addr.eq(self.write.addr[1:]),
                             write.en.eq(self.write.en & (self.write.addr[0] == bank))]
            m.d.comb += [write.data.eq(self.write.data), read.addr.eq(self.read.addr),
                         read.en.eq(self.read.en), self.read.data[bank].eq(read.data)]
        return m
