"""The activation buffer: two banks of activation vectors, one written while the other is read.

`ActivationBuffer` has one write port and one read port, like a simple dual-port memory,
and is built where `ArrayConfig.activation_memory` says:

* "block": an inferred `lib.memory.Memory` (block RAM on an FPGA; any simulator).
* "ice40-spram": the iCE40 UltraPlus SB_SPRAM256KA blocks (16384 x 16 bits each, 4 on
  the UP5K, otherwise unused by the design). A single-port RAM serves one access per
  cycle, so each bank has blocks of its own (`ArrayConfig.spram_blocks_per_bank` side by
  side: a 4-row vector of 32 bits takes two): a bank takes the write when the write
  address falls in it, else the read. That is all the accelerator needs: it loads a bank
  only while no job uses it and reads only the bank of the running job. The iCEBreaker's
  buffer then holds 2 x 16384 vectors instead of 2 x 128 in block RAM, so a GEMM's weights
  cross the serial link once per 64 rows of A (K = 256) instead of once per 2.

Ports: `w_addr`, `w_data`, `w_en` (written at the clock edge); `r_addr`, `r_en`, `r_data`
(`r_data` is the word at the `r_addr` of the last cycle with `r_en` high, held while
`r_en` is low). The bank is the top address bit. A read of the bank written in the same
cycle, or a word held by a bank written since, is undefined with "ice40-spram" (the
accelerator never uses one); with "block" it is the old word.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from golden.config import SPRAM_DEPTH, SPRAM_WIDTH, ArrayConfig

__all__ = ["ActivationBuffer"]


class ActivationBuffer(wiring.Component):
    """`config.activation_buffer_depth` vectors of `config.rows` bytes in two banks."""

    def __init__(self, config: ArrayConfig) -> None:
        self._config = config
        self._width = config.rows * 8
        address = exact_log2(config.activation_buffer_depth)
        super().__init__({
            "w_addr": In(address),
            "w_data": In(self._width),
            "w_en": In(1),
            "r_addr": In(address),
            "r_en": In(1),
            "r_data": Out(self._width),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        if self._config.activation_memory == "block":
            memory = Memory(shape=unsigned(self._width),
                            depth=self._config.activation_buffer_depth, init=[])
            m.submodules.memory = memory
            write, read = memory.write_port(), memory.read_port()
            m.d.comb += [
                write.addr.eq(self.w_addr), write.data.eq(self.w_data), write.en.eq(self.w_en),
                read.addr.eq(self.r_addr), read.en.eq(self.r_en), self.r_data.eq(read.data),
            ]
            return m

        top = len(self.w_addr) - 1          # the bank bit
        blocks = self._config.spram_blocks_per_bank
        read_bank = Signal()
        with m.If(self.r_en):
            m.d.sync += read_bank.eq(self.r_addr[top])
        bank_data = []
        for bank in range(2):
            write = Signal(name=f"write_{bank}")
            select = Signal(name=f"select_{bank}")
            address = Signal(exact_log2(SPRAM_DEPTH), name=f"address_{bank}")
            m.d.comb += [
                write.eq(self.w_en & (self.w_addr[top] == bank)),
                select.eq(write | (self.r_en & (self.r_addr[top] == bank))),
                address.eq(Mux(write, self.w_addr[:top], self.r_addr[:top])),
            ]
            data_in = Signal(blocks * SPRAM_WIDTH, name=f"data_in_{bank}")
            data_out = Signal(blocks * SPRAM_WIDTH, name=f"data_out_{bank}")
            m.d.comb += data_in.eq(self.w_data)
            for block in range(blocks):
                span = slice(block * SPRAM_WIDTH, (block + 1) * SPRAM_WIDTH)
                m.submodules[f"spram_{bank}_{block}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address, i_DATAIN=data_in[span], i_MASKWREN=Const(0b1111, 4),
                    i_WREN=write, i_CHIPSELECT=select, i_CLOCK=ClockSignal(),
                    i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),
                    o_DATAOUT=data_out[span])
            bank_data.append(data_out)
        m.d.comb += self.r_data.eq(Mux(read_bank, bank_data[1], bank_data[0]))
        return m

