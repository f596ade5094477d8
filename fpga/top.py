"""Board top-levels: clock, reset, LEDs and the UART around the bridged accelerator.

`BridgedAccelerator` is everything between the two UART pins: receiver, transmitter, the
link-layer `FrameBridge` (docs/protocol.md, "Serial link") and the `Accelerator`. It has no
PLL and no pins, so it is what the board-top simulation (`fpga.boardsim`) runs.
`BoardTop` puts it on a board: a PLL from the board oscillator to `clock_hz` (the nearest
frequency at or below it that the PLL makes: `BoardTop.achieved_clock_hz`), a synchronized
power-on and button reset, the FTDI UART pins and three status LEDs.

Boards (amaranth-boards platforms):

* ``icebreaker``: `ICEBreakerPlatform` (iCE40UP5K), SB_PLL40_PAD from the 12 MHz pin 35;
  reset button `button` 0; LEDs: green `led_g` heartbeat, red `led_r` link error (a NAK
  sent), and link activity on the heartbeat LED (it flickers while bytes move).
* ``ulx3s-85f``: `ULX3S_85F_Platform` (ECP5-85F), EHXPLLL from the 25 MHz pin; reset on
  `button_pwr`; LEDs 0 heartbeat, 1 receive activity, 2 transmit activity, 7 link error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth.lib.wiring import In, Out

from golden.config import ArrayConfig
from golden.protocol import check_accelerator_config
from hw.accelerator import Accelerator
from hw.uart import UartRx, UartTx, check_divisor, uart_divisor

from .boards import board as board_spec
from .bridge import FrameBridge

__all__ = ["BridgedAccelerator", "BoardTop", "BOARDS", "PllSetting", "ice40_pll",
           "ecp5_pll", "make_platform", "LINK_TIMEOUT_CHARACTERS", "link_timeout_cycles"]

LINK_TIMEOUT_CHARACTERS = 32
"""Silence, in character times (10 bits), after which the bridge abandons a partial frame."""


def link_timeout_cycles(divisor: int) -> int:
    """The bridge's default frame timeout: `LINK_TIMEOUT_CHARACTERS` character times."""
    return LINK_TIMEOUT_CHARACTERS * 10 * divisor


class BridgedAccelerator(wiring.Component):
    """UART pins to accelerator: `UartRx` -> `FrameBridge` -> `Accelerator` -> `FrameBridge`
    -> `UartTx`, all on the `sync` domain's clock. The UARTs and the bridge leave reset
    one cycle after `sync` (a register of their own), the accelerator when the bridge
    releases it.

    Parameters
    ----------
    config
        The accelerator's `ArrayConfig`.
    divisor
        Clock cycles per UART bit (`hw.uart.uart_divisor`).
    timeout_cycles
        The bridge's frame timeout; default `LINK_TIMEOUT_CHARACTERS` character times.
    global_reset
        Drive the accelerator's reset through an ECP5 clock buffer (`DCCA`) onto a global
        network, which reaches every flip-flop of the die with the same short delay (in
        general routing the one register's fanout, spread over the die, took up to 7.8 ns).

    Ports
    -----
    rx : In(1)
        UART line from the host (idle high).
    tx : Out(1)
        UART line to the host.
    rx_active, tx_active : Out(1)
        A character is being received / sent.
    frame_good, frame_bad : Out(1)
        One-cycle pulses: a host frame passed its CRC / was answered with NAK (a damaged or
        incomplete frame, or a UART framing error that made it so).
    """

    def __init__(self, config: ArrayConfig, *, divisor: int,
                 timeout_cycles: int | None = None, global_reset: bool = False) -> None:
        self._config = config
        self._global_reset = global_reset
        self._divisor = divisor
        self._timeout_cycles = (timeout_cycles if timeout_cycles is not None
                                else link_timeout_cycles(divisor))
        # Bad parameters fail here rather than at elaboration.
        check_accelerator_config(config)
        check_divisor(divisor)
        FrameBridge.check_parameters(timeout_cycles=self._timeout_cycles)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "rx_active": Out(1),
            "tx_active": Out(1),
            "frame_good": Out(1),
            "frame_bad": Out(1),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def timeout_cycles(self) -> int:
        return self._timeout_cycles

    def elaborate(self, platform) -> Module:
        m = Module()
        # The UARTs' and the bridge's domain: the same clock, reset by a register of their
        # own. The board's reset net then reaches one flip-flop here, wherever the board's
        # reset logic is placed, and this register's fanout stays next to the bridge
        # (on the ECP5 the board's reset register sat across the chip from the bridge).
        m.domains.link = ClockDomain("link", local=True)
        link_reset = Signal(init=1, reset_less=True)
        m.d.sync += link_reset.eq(ResetSignal("sync"))
        m.d.comb += [ClockSignal("link").eq(ClockSignal("sync")),
                     ResetSignal("link").eq(link_reset)]
        uart_rx = UartRx(self._divisor)
        uart_tx = UartTx(self._divisor)
        bridge = FrameBridge(timeout_cycles=self._timeout_cycles)
        to_link = DomainRenamer({"sync": "link"})
        m.submodules.uart_rx = to_link(uart_rx)
        m.submodules.uart_tx = to_link(uart_tx)
        m.submodules.bridge = to_link(bridge)
        accelerator = Accelerator(self._config)
        # The accelerator's domain: the same clock, reset by the bridge's register alone
        # (high in the bridge's reset too), so no logic merges resets on the way.
        m.domains.accel = ClockDomain("accel", local=True)
        accel_reset = bridge.accel_reset
        if self._global_reset:
            accel_reset = Signal()
            m.submodules.accel_reset_buffer = Instance(
                "DCCA", i_CLKI=bridge.accel_reset, i_CE=1, o_CLKO=accel_reset)
        m.d.comb += [ClockSignal("accel").eq(ClockSignal("sync")),
                     ResetSignal("accel").eq(accel_reset)]
        m.submodules.accelerator = DomainRenamer({"sync": "accel"})(accelerator)

        wiring.connect(m, uart_rx.data, bridge.rx_byte)
        wiring.connect(m, bridge.tx_byte, uart_tx.data)
        wiring.connect(m, bridge.to_accel, accelerator.i_stream)
        wiring.connect(m, accelerator.o_stream, bridge.from_accel)
        m.d.comb += [
            uart_rx.rx.eq(self.rx),
            self.tx.eq(uart_tx.tx),
            self.tx_active.eq(uart_tx.busy),
            self.frame_good.eq(bridge.frame_good),
            self.frame_bad.eq(bridge.frame_bad),
        ]
        receiving = Signal()
        m.d.sync += receiving.eq(~self.rx)          # any low bit time counts as activity
        m.d.comb += self.rx_active.eq(receiving)
        return m


# --- PLLs ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PllSetting:
    """One PLL configuration: the achieved output frequency and the primitive's
    parameters."""

    input_hz: float
    output_hz: float
    parameters: dict[str, int]


def _ice40_settings(input_hz: float) -> Iterator[PllSetting]:
    # iCE40 sysCLOCK PLL (SB_PLL40, FEEDBACK_PATH "SIMPLE"): f_pfd = f_in / (DIVR + 1) in
    # 10..133 MHz, f_vco = f_pfd * (DIVF + 1) in 533..1066 MHz, f_out = f_vco / 2^DIVQ in
    # 16..275 MHz (the rules icepll applies).
    for divr in range(16):
        pfd = input_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if 16e6 <= out <= 275e6:
                    filter_range = next(index for index, limit in
                                        enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 1e12), 1)
                                        if pfd < limit)
                    yield PllSetting(input_hz, out, {"DIVR": divr, "DIVF": divf,
                                                     "DIVQ": divq,
                                                     "FILTER_RANGE": filter_range})


def _ecp5_settings(input_hz: float) -> Iterator[PllSetting]:
    # ECP5 EHXPLLL with CLKOP fed back: f_out = f_in * CLKFB_DIV / CLKI_DIV, f_pfd =
    # f_in / CLKI_DIV >= 3.125 MHz, f_vco = f_out * CLKOP_DIV in 400..800 MHz (ecppll's
    # rules).
    for clki_div in range(1, 129):
        if input_hz / clki_div < 3.125e6:
            break
        for clkfb_div in range(1, 81):
            out = input_hz * clkfb_div / clki_div
            if not 3.125e6 <= out <= 400e6:
                continue
            # Of the output dividers that keep the VCO in range, the one nearest 600 MHz
            # (the middle of the range, as ecppll chooses).
            dividers = [div for div in range(1, 129) if 400e6 <= out * div <= 800e6]
            if dividers:
                clkop_div = min(dividers, key=lambda div: abs(out * div - 600e6))
                yield PllSetting(input_hz, out, {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div,
                                                 "CLKOP_DIV": clkop_div})


def _nearest_below(settings: Iterator[PllSetting], clock_hz: int, what: str) -> PllSetting:
    best = None
    for setting in settings:
        if setting.output_hz <= clock_hz and (best is None
                                              or setting.output_hz > best.output_hz):
            best = setting
    if best is None:
        raise ValueError(f"the {what} PLL cannot make {clock_hz} Hz or any lower frequency")
    return best


def ice40_pll(input_hz: float, clock_hz: int) -> PllSetting:
    """SB_PLL40 parameters for the highest frequency at or below `clock_hz`."""
    return _nearest_below(_ice40_settings(input_hz), clock_hz, "iCE40")


def ecp5_pll(input_hz: float, clock_hz: int) -> PllSetting:
    """EHXPLLL parameters for the highest frequency at or below `clock_hz`."""
    return _nearest_below(_ecp5_settings(input_hz), clock_hz, "ECP5")


# --- Boards ------------------------------------------------------------------------------

def _platforms() -> dict[str, type]:
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return {"icebreaker": ICEBreakerPlatform, "ulx3s-85f": ULX3S_85F_Platform}


BOARDS: tuple[str, ...] = ("icebreaker", "ulx3s-85f")
"""Boards `BoardTop` supports."""

_OSCILLATOR_HZ = {"icebreaker": 12e6, "ulx3s-85f": 25e6}


def make_platform(board: str):
    """An instance of the amaranth-boards platform of `board`."""
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    return _platforms()[board]()


class BoardTop(wiring.Component):
    """The accelerator on a board, reached through the board's FTDI UART.

    Parameters
    ----------
    board
        "icebreaker" or "ulx3s-85f".
    config
        The accelerator's `ArrayConfig`.
    clock_hz
        Requested system clock; the PLL makes the nearest frequency at or below it
        (`achieved_clock_hz`), and the UART divisor is computed from that.
    baudrate
        UART rate (8N1).

    Reset: the design is held in reset until the PLL locks and for 2^16 cycles after, and
    while the reset button is pressed (synchronized to the clock).
    """

    def __init__(self, board: str, config: ArrayConfig, *, clock_hz: int,
                 baudrate: int = 115200) -> None:
        try:
            if board not in BOARDS:
                raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
            if isinstance(clock_hz, bool) or not isinstance(clock_hz, int) or clock_hz <= 0:
                raise ValueError(f"clock_hz must be a positive integer, not {clock_hz!r}")
            check_accelerator_config(config)
            oscillator = _OSCILLATOR_HZ[board]
            pll = (ice40_pll if board == "icebreaker" else ecp5_pll)(oscillator, clock_hz)
            divisor = uart_divisor(pll.output_hz, baudrate)
        except (TypeError, ValueError):
            self._MustUse__used = True      # refused: no "never elaborated" warning
            raise
        self._board = board
        self._config = config
        self._pll = pll
        self._baudrate = baudrate
        self._divisor = divisor
        super().__init__({})

    @property
    def board(self) -> str:
        return self._board

    @property
    def pll(self) -> PllSetting:
        return self._pll

    @property
    def achieved_clock_hz(self) -> float:
        """The system clock the PLL makes (at most the requested `clock_hz`)."""
        return self._pll.output_hz

    @property
    def divisor(self) -> int:
        """UART clock cycles per bit."""
        return self._divisor

    def describe(self) -> str:
        """One line: board, achieved clock, baud rate and divisor."""
        return (f"{self._board}: clock {self.achieved_clock_hz / 1e6:.3f} MHz, UART "
                f"{self._baudrate} baud (divisor {self._divisor}), PLL {self._pll.parameters}")

    def elaborate(self, platform) -> Module:
        m = Module()

        def input_pin(name: str, number: int) -> Signal:
            buffer = io.Buffer("i", platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}_buffer"] = buffer
            return buffer.i

        def output_pin(name: str, number: int) -> Signal:
            buffer = io.Buffer("o", platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}_buffer"] = buffer
            return buffer.o

        m.domains.sync = ClockDomain("sync")
        clock = Signal()                    # the PLL output, constrained for timing analysis
        m.d.comb += ClockSignal("sync").eq(clock)
        locked = Signal()
        if self._board == "icebreaker":
            pad = platform.request("clk12", dir="-")
            parameters = self._pll.parameters
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=parameters["DIVR"], p_DIVF=parameters["DIVF"],
                p_DIVQ=parameters["DIVQ"], p_FILTER_RANGE=parameters["FILTER_RANGE"],
                i_PACKAGEPIN=pad.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clock, o_LOCK=locked)
            button = input_pin("button", 0)
            leds = {"heartbeat": output_pin("led_g", 0), "error": output_pin("led_r", 0)}
        else:
            clk25 = input_pin("clk25", 0)
            parameters = self._pll.parameters
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{self._pll.input_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self._pll.output_hz / 1e6:.6f}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
                p_CLKI_DIV=parameters["CLKI_DIV"], p_CLKFB_DIV=parameters["CLKFB_DIV"],
                p_CLKOP_DIV=parameters["CLKOP_DIV"],
                p_CLKOP_CPHASE=parameters["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
                i_RST=0, i_STDBY=0, i_CLKI=clk25, i_CLKFB=clock,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clock, o_LOCK=locked)
            button = input_pin("button_pwr", 0)
            leds = {"heartbeat": output_pin("led", 0), "rx": output_pin("led", 1),
                    "tx": output_pin("led", 2), "error": output_pin("led", 7)}
        platform.add_clock_constraint(clock, self._pll.output_hz)

        # Reset: asynchronously asserted by "PLL not locked", released synchronously; then
        # a power-on counter; the button (synchronized) restarts the counter.
        m.domains.por = ClockDomain("por", reset_less=False)
        m.d.comb += ClockSignal("por").eq(clock)
        m.submodules.lock_sync = ResetSynchronizer(~locked, domain="por")
        pressed = Signal()
        m.submodules.button_sync = FFSynchronizer(button, pressed, o_domain="por")
        delay = Signal(16)
        ready = Signal()
        with m.If(pressed):
            m.d.por += [delay.eq(0), ready.eq(0)]
        with m.Elif(delay == 0xFFFF):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += delay.eq(delay + 1)
        # The reset comes straight from a register (no inverter between it and the reset
        # net, which reaches every corner of the design).
        reset = Signal(init=1)
        m.d.por += reset.eq(~ready)
        m.d.comb += ResetSignal("sync").eq(reset)

        m.submodules.core = core = BridgedAccelerator(
            self._config, divisor=self._divisor,
            global_reset=board_spec(self._board).family == "ecp5")   # DCCA: an ECP5 primitive
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buffer = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buffer = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(uart_rx.i), uart_tx.o.eq(core.tx)]

        # LEDs: a 1 Hz-ish heartbeat, activity and errors stretched to about 50 ms. They
        # count ticks of a 2^16-cycle prescaler: short counters, no long carry chains. They
        # have no reset (they start at 0 with the bitstream), so the reset net does not
        # reach them.
        prescaler = Signal(16, reset_less=True)
        tick = Signal(reset_less=True)
        m.d.sync += [prescaler.eq(prescaler + 1), tick.eq(prescaler == 0)]
        tick_hz = self.achieved_clock_hz / (1 << 16)
        half_period = max(1, round(tick_hz / 2))
        heartbeat = Signal(range(half_period + 1), reset_less=True)
        beat = Signal(reset_less=True)
        with m.If(tick):
            with m.If(heartbeat == half_period - 1):
                m.d.sync += [heartbeat.eq(0), beat.eq(~beat)]
            with m.Else():
                m.d.sync += heartbeat.eq(heartbeat + 1)
        stretch = max(2, round(tick_hz / 20))

        def stretched(pulse) -> Signal:
            counter = Signal(range(stretch + 1), reset_less=True)
            pulse_r = Signal(reset_less=True)
            m.d.sync += pulse_r.eq(pulse)
            with m.If(pulse_r):
                m.d.sync += counter.eq(stretch)
            with m.Elif(tick & (counter != 0)):
                m.d.sync += counter.eq(counter - 1)
            return counter != 0

        error = stretched(core.frame_bad)
        if self._board == "icebreaker":
            activity = stretched(core.rx_active | core.tx_active)
            m.d.comb += [leds["heartbeat"].eq(beat ^ activity), leds["error"].eq(error)]
        else:
            m.d.comb += [leds["heartbeat"].eq(beat),
                         leds["rx"].eq(stretched(core.rx_active)),
                         leds["tx"].eq(stretched(core.tx_active)),
                         leds["error"].eq(error)]
        return m
