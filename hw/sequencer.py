"""The sequencer: queued jobs -> activation vectors for the systolic array.

It takes one job (a COMPUTE's activation bank) at a time from the job FIFO and issues, for
each group of N-tiles (1, or BK / lc for MX outputs), each N-tile, each K-tile, the rows
m = 0 .. M_tile - 1 of the activation bank (address k_tile * M + m, a 1-cycle memory read
into the registered stage S1). The first vector of each pass carries `swap`, so the weight
tile that loaded into the array's shadow registers during the previous pass becomes active
without a bubble. Each vector carries a `meta` tag to the accumulators: the accumulator
address, `first` (overwrite instead of add), `group_end`, and in the MX modes `last_pass`,
`first_block`, `pop_scale` and the row's activation scale code `ca`. A pass shorter than
`pass_min(mode)` is padded with bubbles; before the first vector of a group the sequencer
waits until the group's accumulator bank has been drained (docs/architecture.md).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from golden.config import ArrayConfig

from .arith import SkidBuffer
from .configure import config_layout

__all__ = ["Sequencer", "vector_meta"]


def vector_meta(config: ArrayConfig) -> data.StructLayout:
    """The tag the sequencer gives every activation vector, which the array carries to the
    accumulators."""
    fields = {
        "addr": unsigned(ceil_log2(config.accumulator_depth)),
        "first": unsigned(1),       # overwrite instead of add (first pass of K / block)
        "group_end": unsigned(1),   # last vector of an accumulator bank's group
    }
    if config.has_mx:
        fields.update({
            "last_pass": unsigned(1),    # last pass of a K-block: update the BFP acc
            "first_block": unsigned(1),  # the BFP accumulator starts from zero
            "pop_scale": unsigned(1),    # last vector of the block: next weight scales
            "ca": unsigned(8),           # the row's activation scale code for the block
        })
    return data.StructLayout(fields)


class Sequencer(wiring.Component):
    """Jobs -> the array's activation and weight streams.

    Ports
    -----
    jobs : In(stream.Signature(1))
        Jobs to run: the activation bank of each COMPUTE, in order.
    act_read : the activation buffer's read port (`hw.actbuffer.ActivationBuffer`).
    scale_read : the MX activation-scale memory's read port (MX builds).
    weights_in : In(stream.Signature(8 * C))
        The weight rows, in order (`hw.router.PayloadRouter`).
    vectors, weights : Out(the array's `a` and `w` streams)
    config : In(config_layout(config))
    bank_busy : In(2)
        The accumulator banks being filled or drained (`hw.banks.AccumulatorBanks`).
    claim, claim_bank, claim_last : Out(1)
        One cycle: the first vector of a group is issued into that bank (with the job's
        last group).
    job_done : Out(2)
        One cycle, a one-hot bank mask: the job reading that activation bank has issued its
        last vector.
    running : Out(1)
        A job is being issued.
    input_stall, output_stall : Out(1)
        A vector waits for the array (its weight tile); the next group waits for its
        accumulator bank.

    Throughput one vector per cycle while the array takes them; bubbles pad passes shorter
    than `config.pass_last + 1` rows.
    """

    def __init__(self, config: ArrayConfig, vector_layout: data.Layout,
                 weight_layout: data.Layout) -> None:
        self._config = config
        members = {
            "jobs": In(stream.Signature(1)),
            "act_read": In(ReadPort.Signature(
                addr_width=ceil_log2(config.activation_buffer_depth), shape=8 * config.rows)),
            "weights_in": In(stream.Signature(8 * config.cols)),
            "vectors": Out(stream.Signature(vector_layout)),
            "weights": Out(stream.Signature(weight_layout)),
            "config": In(config_layout(config)),
            "bank_busy": In(2),
            "claim": Out(1),
            "claim_bank": Out(1),
            "claim_last": Out(1),
            "job_done": Out(2),
            "running": Out(1),
            "input_stall": Out(1),
            "output_stall": Out(1),
        }
        if config.has_mx:
            members["scale_read"] = In(ReadPort.Signature(
                addr_width=ceil_log2(2 * config.scale_bank_words), shape=64))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        c = self.config
        act_half = config.activation_bank_depth
        ppb = config.passes_per_block if config.has_mx else 1
        scale_bank = config.scale_bank_words
        running = self.running
        self.job_bank = Signal()
        self.row = Signal.like(c.pass_last)      # i: row of the M-tile (>= M: a bubble)
        self.k_tile = Signal.like(c.k_last)
        self.k_next = Signal.like(c.k_last)      # k_tile + 1, a register: no adder on the
        #                                          path into last_k (the same for group_next)
        self.tile = Signal(range(max(2, config.block_size // config.cols + 1)))  # in group
        self.group_next = Signal(16)     # the group's index + 1
        self.pass_base = Signal(range(act_half + 1))           # k_tile * M
        # The activation read address job_bank * act_half + pass_base + row, kept as a
        # register updated with row and pass_base (no adder between it and the buffer's
        # address pins, which fan out to every block RAM of a deep buffer).
        self.act_addr = Signal.like(self.act_read.addr)
        self.tile_base = Signal(range(config.accumulator_bank_depth + 1))   # tile * M
        self.acc_select = acc_select = Signal()
        self.block_pass = Signal(range(max(2, ppb)))
        self.first_block = Signal()
        self.code_base = Signal(range(scale_bank * 8 + 1))     # block * M

        self.s1_valid = s1_valid = Signal()
        self.s1_swap = Signal()
        self.s1_meta = Signal(self.vectors.payload.meta.shape())
        self.s1_byte = Signal(3)
        self.advance = advance = Signal()
        m.d.comb += advance.eq(~s1_valid | self.vectors.ready)

        # row, k_tile and tile are all 0: a flag kept with them (a short path into
        # waiting_bank, step and every sequencer register).
        self.group_start = group_start = Signal()
        bank_busy = Signal()        # the bank of the group at hand is busy (see below)
        waiting_bank = Signal()
        m.d.comb += waiting_bank.eq(running & group_start & bank_busy)
        self.step = step = Signal()
        m.d.comb += step.eq(running & advance & ~waiting_bank)
        # Each loop counter's "at its last value" is a flag kept with it (the counters'
        # comparisons are then off the paths through step, group_start and the counters).
        self.last_row = last_row = Signal()         # row == c.pass_last
        self.last_k = last_k = Signal()             # k_tile == c.k_last
        self.last_tile = last_tile = Signal()       # tile == c.group_last
        self.last_group = Signal()                  # group_next == c.groups_last + 1
        # `bank_busy` is a register (a short path into step): the busy bit of the bank
        # `acc_select` names in the next cycle. Only the sequencer claims a bank (its own,
        # at a group's first step, which is never the step before another group's start),
        # and the drain's releases are seen a cycle late: the flag is never low for a busy
        # bank.
        m.d.sync += bank_busy.eq(Mux(step & last_row & last_k & last_tile,
                                     self.bank_busy.bit_select(~acc_select, 1),
                                     self.bank_busy.bit_select(acc_select, 1)))
        m.d.comb += [self.output_stall.eq(waiting_bank),
                     self.input_stall.eq(s1_valid & ~self.vectors.ready)]
        self._start(m)
        self._read(m)
        self._issue(m)
        self._streams(m)
        return m

    def _start(self, m: Module) -> None:
        """A job taken from `jobs`: every loop counter at its start."""
        c = self.config
        log_act_half = exact_log2(self._config.activation_bank_depth)
        jobs = self.jobs
        with m.If(~self.running & jobs.valid):
            m.d.comb += jobs.ready.eq(1)
            m.d.sync += [
                self.running.eq(1), self.job_bank.eq(jobs.payload), self.row.eq(0),
                self.k_tile.eq(0), self.k_next.eq(1), self.group_next.eq(1),
                self.last_row.eq(c.pass_last == 0), self.last_k.eq(c.k_last == 0),
                self.last_tile.eq(c.group_last == 0), self.last_group.eq(c.groups_last == 0),
                self.group_start.eq(1),
                self.tile.eq(0), self.pass_base.eq(0), self.tile_base.eq(0),
                self.block_pass.eq(0), self.first_block.eq(1), self.code_base.eq(0),
                self.act_addr.eq(Cat(Const(0, log_act_half), jobs.payload)),
            ]

    def _read(self, m: Module) -> None:
        """The activation (and scale-code) reads of the row at hand."""
        m.d.comb += [
            self.act_read.addr.eq(self.act_addr),
            self.act_read.en.eq(self.advance),
        ]
        if self._config.has_mx:
            scale_bank = self._config.scale_bank_words
            self.code_index = code_index = Signal(range(2 * scale_bank * 8))
            m.d.comb += [
                code_index.eq(self.job_bank * (scale_bank * 8) + self.code_base + self.row),
                self.scale_read.addr.eq(code_index[3:]),
                self.scale_read.en.eq(self.advance),
            ]

    def _issue(self, m: Module) -> None:
        """Stage S1 (the vector and its tag) and the loop counters' step: row -> K-tile ->
        N-tile -> group."""
        config, c = self._config, self.config
        has_mx = config.has_mx
        ppb = config.passes_per_block if has_mx else 1
        log_act_half = exact_log2(config.activation_bank_depth)
        row, k_tile, k_next, tile = self.row, self.k_tile, self.k_next, self.tile
        group_next, pass_base, act_addr = self.group_next, self.pass_base, self.act_addr
        tile_base, acc_select, block_pass = self.tile_base, self.acc_select, self.block_pass
        first_block, code_base, job_bank = self.first_block, self.code_base, self.job_bank
        last_row, last_k, last_tile = self.last_row, self.last_k, self.last_tile
        last_group, group_start, step = self.last_group, self.group_start, self.step
        with m.If(self.advance):
            m.d.sync += self.s1_valid.eq(step & (row < c.m))
        with m.If(step):
            meta = self.s1_meta
            m.d.sync += [
                self.s1_swap.eq(row == 0),
                meta.addr.eq(acc_select * config.accumulator_bank_depth + tile_base + row),
                meta.first.eq(Mux(c.mx, block_pass == 0, k_tile == 0)),
                meta.group_end.eq(last_tile & last_k & (row == c.m_last)),
            ]
            if has_mx:
                last_pass = block_pass == ppb - 1
                m.d.sync += [
                    meta.last_pass.eq(last_pass),
                    meta.first_block.eq(first_block),
                    meta.pop_scale.eq(last_pass & (row == c.m_last)),
                    self.s1_byte.eq(self.code_index[:3]),
                ]
            with m.If(group_start):
                m.d.comb += [self.claim.eq(1), self.claim_bank.eq(acc_select),
                             self.claim_last.eq(last_group)]
            # Advance i -> k_tile -> tile -> group.
            m.d.sync += group_start.eq(last_row & last_k & last_tile)
            pass_next = pass_base + c.m
            with m.If(~last_row):
                m.d.sync += [row.eq(row + 1), last_row.eq(row + 1 == c.pass_last),
                             act_addr.eq(act_addr + 1)]
            with m.Else():
                m.d.sync += [row.eq(0), last_row.eq(c.pass_last == 0),
                             # pass_next < act_half unless last_k: the bank is the top bit
                             act_addr.eq(Cat(Mux(last_k, 0, pass_next)[:log_act_half],
                                             job_bank))]
                if has_mx:
                    with m.If(block_pass == ppb - 1):
                        m.d.sync += [block_pass.eq(0), first_block.eq(0),
                                     code_base.eq(code_base + c.m)]
                    with m.Else():
                        m.d.sync += block_pass.eq(block_pass + 1)
                with m.If(~last_k):
                    m.d.sync += [k_tile.eq(k_next), k_next.eq(k_next + 1),
                                 pass_base.eq(pass_next), last_k.eq(k_next == c.k_last)]
                with m.Else():
                    m.d.sync += [k_tile.eq(0), k_next.eq(1), pass_base.eq(0), block_pass.eq(0),
                                 first_block.eq(1), code_base.eq(0), last_k.eq(c.k_last == 0)]
                    with m.If(~last_tile):
                        m.d.sync += [tile.eq(tile + 1), tile_base.eq(tile_base + c.m),
                                     last_tile.eq(tile + 1 == c.group_last)]
                    with m.Else():
                        m.d.sync += [tile.eq(0), tile_base.eq(0), acc_select.eq(~acc_select),
                                     last_tile.eq(c.group_last == 0)]
                        with m.If(~last_group):
                            m.d.sync += [group_next.eq(group_next + 1),
                                         last_group.eq(group_next == c.groups_last)]
                        with m.Else():
                            m.d.sync += self.running.eq(0)
                            m.d.comb += self.job_done.eq(Mux(job_bank, 0b10, 0b01))

    def _streams(self, m: Module) -> None:
        """The activation stream from S1, the weight stream from `weights_in`."""
        config, c = self._config, self.config
        vectors, weights_out = self.vectors, self.weights
        m.d.comb += [
            vectors.valid.eq(self.s1_valid),
            vectors.payload.data.eq(self.act_read.data),
            vectors.payload.swap.eq(self.s1_swap),
            vectors.payload.meta.eq(self.s1_meta),
            weights_out.payload.mode.eq(c.mode),
        ]
        # The weight FIFO's output is its block RAM's read register (on the ECP5 about 6 ns
        # to the data) and the array's weight bus reaches every PE: in the fast pipeline a
        # skid buffer sits between them. It takes the next tile's words while the shadow
        # registers are full, so a load still starts right after a swap.
        weights = self.weights_in
        if config.pipeline == "fast":
            weight_skid = SkidBuffer(8 * config.cols)
            m.submodules.weight_skid = weight_skid
            wiring.connect(m, wiring.flipped(self.weights_in), weight_skid.i_stream)
            weights = weight_skid.o_stream
        m.d.comb += [weights_out.valid.eq(weights.valid),
                     weights_out.payload.data.eq(weights.payload),
                     weights.ready.eq(weights_out.ready)]
        if config.has_mx:
            m.d.comb += vectors.payload.meta.ca.eq(
                self.scale_read.data.word_select(self.s1_byte, 8))
