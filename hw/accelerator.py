"""The lpmac accelerator: one packet stream in, one packet stream out (docs/protocol.md).

Inside (docs/architecture.md, "Accelerator"):

    i_stream -> command decoder --+--> activation buffer (2 banks) --+
                  |               +--> MX activation scales (2 banks)+--> sequencer --> array
                  |               +--> weight FIFO --------------------------------> (shadow)
                  |               +--> MX weight-scale FIFO ---------------+
                  |               +--> requantization parameters           |
                  |                                                        v
                  |        array columns -> IntAccumulator (+ BfpAccumulator) <-> accumulator
                  |                                                     SRAM (2 banks)
                  |                                                        |
                  +--> response queue --> output engine <-- result FIFO <-- packer <-- drain
                                               |                 (Requantizer / int32 /
                                           o_stream               BfpToFloat32 / MxQuantizer)

The decoder parses packets and validates them; LOAD_ACTIVATIONS / LOAD_SCALES write the bank
named in the header (waiting while a queued or running COMPUTE reads it); COMPUTE queues a
job and streams its payload (weights, and in MX modes the weight scales) into FIFOs that the
job consumes at the pace of computation. The sequencer runs one job at a time: for every
N-tile and every K-tile (R rows of K) it sends the M-tile's activation vectors through the
array while the next weight tile loads into the shadow registers. Column sums are added into
the accumulator SRAM (address = row m) by read-modify-write; in the MX modes the integer sums
of a K-block are completed first and then added into the BFP accumulators with the block's
exponent. After the last K-tile of an N-tile (a group of BK / lc N-tiles for MX outputs), the
bank is drained through the output unit while the next N-tile computes in the other bank.
Every response is queued in order and sent by the output engine.

Performance: one activation vector per cycle (R * C MACs, twice that in 4-bit-weight modes)
whenever the weight FIFO holds the next tile and the accumulator bank is free; bubbles only
pad array passes shorter than `pass_min(mode)` vectors (read-modify-write hazards).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.config import MODE_INFO, ArrayConfig
from golden.protocol import check_accelerator_config

from .accumulate import ACC_EXPONENT_BITS
from .accumulate import bfp_layout as _bfp_layout
from .accumulation import Accumulation
from .actbuffer import ActivationBuffer
from .array import SystolicArray
from .banks import AccumulatorBanks, ActivationBankUses
from .configure import ConfigureUnit
from .counters import PerformanceCounters
from .decoder import CommandDecoder
from .drain import Drain
from .responder import RESPONSE_LAYOUT, Responder
from .results import ResultPath
from .router import PayloadRouter
from .sequencer import Sequencer
from .wire import WORD_LAYOUT

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The lpmac GEMM accelerator with its packet protocol (docs/protocol.md, version 1.0).

    Parameters
    ----------
    config
        The `ArrayConfig`; protocol 1.0 needs stream_width 64 and rows, cols <= 8.
    multiplier
        PE multiplier variant (see `hw.pe`); `config.multiplier` when not given.

    Ports
    -----
    i_stream : In(stream.Signature(WORD_LAYOUT))
        Request packets: `data` a 64-bit word, `last` on the final word of each packet.
    o_stream : Out(stream.Signature(WORD_LAYOUT))
        Response packets, one per request, in request order.

    Throughput: the array takes one activation vector per cycle while a job runs, as long as
    the input stream delivers the next weight tile (R words) within an array pass (M_tile
    cycles) and the output stream takes the previous N-tile's results within an N-tile's
    compute time; `pass_min(mode)` is the shortest pass without bubbles. A command without
    payload (IDENTIFY, CLEAR_COUNTERS) is answered `command_latency` cycles after its word
    is accepted, when nothing is queued before it.
    """

    def __init__(self, config: ArrayConfig, *, multiplier: str | None = None) -> None:
        check_accelerator_config(config)
        self._config = config
        self._multiplier = config.multiplier if multiplier is None else multiplier
        super().__init__({
            "i_stream": In(stream.Signature(WORD_LAYOUT)),
            "o_stream": Out(stream.Signature(WORD_LAYOUT)),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def command_latency(self) -> int:
        """Cycles from accepting the only word of a command without payload (IDENTIFY,
        CLEAR_COUNTERS) to its response header on `o_stream` (nothing queued before it):
        decode, check, dispatch, execute, queue the response (a buffered FIFO: 2), output
        engine, output register."""
        return 8

    def _pass_mins(self) -> tuple[int, int]:
        """(integer modes, MX modes) shortest pass; 1 where no such mode is built."""
        config = self._config
        int_modes = [n for n in config.modes if not MODE_INFO[n].mx]
        mx_modes = [n for n in config.modes if MODE_INFO[n].mx]
        return (self.pass_min(int_modes[0]) if int_modes else 1,
                self.pass_min(mx_modes[0]) if mx_modes else 1)

    def pass_min(self, mode: str) -> int:
        """Shortest array pass (vectors per weight tile) the sequencer issues in `mode`;
        shorter M-tiles are padded with bubbles. The accumulator read-modify-write of a row
        must have been written back before the next pass reads it: IntAccumulator latency
        + 2 cycles, and in the MX modes BfpAccumulator latency + 2 cycles between the last
        passes of consecutive K-blocks (`passes_per_block` passes apart)."""
        accumulation = Accumulation(self._config)
        int_gap = accumulation.int_latency() + 2
        if not self._config.mode(mode).mx:
            return int_gap
        bfp_gap = accumulation.bfp_latency() + 2
        return max(int_gap, -(-bfp_gap // self._config.passes_per_block))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        config = self._config
        rows, cols = config.rows, config.cols
        has_mx = config.has_mx
        has_requant = config.has_requantizer   # requant_depth 0: int32 outputs only
        meta_layout = self._meta_layout()
        array = SystolicArray(config, multiplier=self._multiplier, meta_shape=meta_layout)
        m.submodules.array = array
        lc_max = config.lane_columns
        block = config.block_size

        # --- The engines (docs/architecture.md, "Accelerator") ----------------------------
        configure = ConfigureUnit(config, lc_max, self._pass_mins())
        c = configure.registers
        decoder = CommandDecoder(config)
        router = PayloadRouter(config)
        sequencer = Sequencer(config)
        accumulation = Accumulation(config)
        drain = Drain(config)
        results = ResultPath(config, self._multiplier)
        responder = Responder(config)
        counters = PerformanceCounters(config)
        bank_uses = ActivationBankUses()
        acc_banks = AccumulatorBanks()
        all_idle = Signal()

        # --- Memories and FIFOs -----------------------------------------------------------
        m.submodules.act_buffer = act_buffer = ActivationBuffer(config)

        weight_fifo = SyncFIFOBuffered(width=cols * 8, depth=config.weight_buffer_depth)
        m.submodules.weight_fifo = weight_fifo
        job_fifo = SyncFIFOBuffered(width=1, depth=3)   # (depth 2 has a 0-bit address)
        m.submodules.job_fifo = job_fifo
        response_fifo = SyncFIFOBuffered(width=RESPONSE_LAYOUT.size, depth=4)
        m.submodules.response_fifo = response_fifo
        result_fifo = SyncFIFOBuffered(width=64, depth=16)
        m.submodules.result_fifo = result_fifo

        acc_layout = data.ArrayLayout(signed(32), lc_max)
        acc_mem = Memory(shape=acc_layout, depth=config.accumulator_depth, init=[])
        m.submodules.acc_mem = acc_mem
        acc_write = acc_mem.write_port()
        acc_read = acc_mem.read_port()
        acc_drain = acc_mem.read_port()

        requant_write = requant_read = None
        scale_write = scale_read = bscale_fifo = None
        bfp_write = bfp_read = bfp_drain = None
        if has_requant:
            requant_layout = data.StructLayout({
                "bias": signed(32), "multiplier": unsigned(32), "shift": signed(6)})
            requant_mem = Memory(shape=requant_layout, depth=config.requant_depth, init=[])
            m.submodules.requant_mem = requant_mem
            requant_write = requant_mem.write_port()
            requant_read = requant_mem.read_port()
        if has_mx:
            scale_mem = Memory(shape=unsigned(64), depth=2 * config.scale_bank_words, init=[])
            m.submodules.scale_mem = scale_mem
            scale_write = scale_mem.write_port()
            scale_read = scale_mem.read_port()
            scale_row_words = -(-lc_max // 8)
            # + 3: the slots `scale_room` keeps spare. The inner FIFO (one slot less) gets
            # a power-of-two depth: its pointers then wrap without a comparison, which keeps
            # its level's loop short (an 8 x 8 ECP5 build's critical path).
            scale_slots = max(4, config.weight_buffer_depth // block + 2) + 3
            bscale_fifo = SyncFIFOBuffered(
                width=64 * scale_row_words, depth=1 + (1 << ceil_log2(scale_slots - 1)))
            m.submodules.bscale_fifo = bscale_fifo
            bfp_value = _bfp_layout(config.acc_bits, ACC_EXPONENT_BITS)
            bfp_mem = Memory(shape=data.ArrayLayout(bfp_value, lc_max),
                             depth=config.accumulator_depth, init=[])
            m.submodules.bfp_mem = bfp_mem
            bfp_write = bfp_mem.write_port()
            bfp_read = bfp_mem.read_port()
            bfp_drain = bfp_mem.read_port()

        # --- The engines' logic, wired -----------------------------------------------------
        bank_uses.build(m)
        decoder.build(m, i_stream=self.i_stream, configure=configure, router=router,
                      act_buffer=act_buffer, requant_write=requant_write,
                      scale_write=scale_write, weight_fifo=weight_fifo, bscale_fifo=bscale_fifo,
                      job_fifo=job_fifo, response_fifo=response_fifo, bank_uses=bank_uses,
                      all_idle=all_idle, items_rest=results.items_rest, lc_max=lc_max)
        sequencer.build(m, array=array, act_buffer=act_buffer, scale_read=scale_read,
                        job_fifo=job_fifo, weight_fifo=weight_fifo, c=c,
                        acc_busy=acc_banks.busy, acc_last=acc_banks.last,
                        bank_use_dec=bank_uses.decrement, meta_layout=meta_layout)
        accumulation.build(m, array=array, acc_read=acc_read, acc_write=acc_write,
                           bfp_read=bfp_read, bfp_write=bfp_write, bscale_fifo=bscale_fifo,
                           c=c, meta_layout=meta_layout, lc_max=lc_max)
        drain.build_reader(m, banks=acc_banks, c=c, acc_drain=acc_drain, bfp_drain=bfp_drain,
                           requant_read=requant_read, lc_max=lc_max)
        acc_banks.build_full(m, accumulation.group_written, accumulation.group_bank)
        results.build_packer(m, c)
        drain.build_lanes(m, acc_drain=acc_drain, bfp_drain=bfp_drain,
                          requant_read=requant_read)
        results.build_units(m, drained=drain.drained, c=c,
                            drain_busy=[drain.d1_valid, *drain.skid_busy],
                            result_fifo=result_fifo)
        responder.build(m, self.o_stream, response_fifo, result_fifo, counters.words,
                        decoder.counters_pending)

        # Registered: only the decoder starts work, and it spends several cycles (header,
        # check, dispatch) between queueing one command and testing this for the next.
        m.d.sync += all_idle.eq(
            ~sequencer.running & (job_fifo.level == 0) & (acc_banks.busy == 0)
            & ~results.units_busy & ~accumulation.bfp_busy & (result_fifo.level == 0)
            & responder.out_idle)

        accepted = array.a.valid & array.a.ready
        counters.build(m, {
            "busy": accepted,
            "input_stall": sequencer.s1_valid & ~array.a.ready,
            "output_stall": sequencer.waiting_bank,
            "macs": Mux(accepted, Mux(c.double_macs, 2 * rows * cols, rows * cols), 0),
        }, clear=decoder.clear_counters, snapshot=decoder.snapshot_counters)
        return m

    def _meta_layout(self) -> data.StructLayout:
        """Tag carried by every activation vector through the array to the accumulators."""
        fields = {
            "addr": unsigned(ceil_log2(self._config.accumulator_depth)),
            "first": unsigned(1),       # overwrite instead of add (first pass of K / block)
            "group_end": unsigned(1),   # last vector of an accumulator bank's group
        }
        if self._config.has_mx:
            fields.update({
                "last_pass": unsigned(1),    # last pass of a K-block: update the BFP acc
                "first_block": unsigned(1),  # the BFP accumulator starts from zero
                "pop_scale": unsigned(1),    # last vector of the block: next weight scales
                "ca": unsigned(8),           # the row's activation scale code for the block
            })
        return data.StructLayout(fields)
