// Simulation model of the Lattice ECP5 MULT18X18D (18 x 18 multiplier of a sysDSP slice), to
// simulate lpmac's DSP PEs on Verilator (no comment line may begin with that tool's name: it
// would read it as a pragma). Yosys ships only a black box of it (share/lattice/cells_bb_ecp5.v);
// this model follows Lattice's ECP5 sysDSP usage guide (FPGA-TN-02205) for what lpmac uses: A and B
// signed or unsigned per SIGNEDA / SIGNEDB, the product P = A * B (36 bits), and the input
// (A, B), pipeline and output registers, each either bypassed ("NONE") or clocked by CLK0
// with its clock enable CE0..CE3 and synchronous reset RST0..RST3 (RESETMODE "SYNC").
// SIGNEDA / SIGNEDB pass through the A / B input registers. The C input, the shift chains
// (SOURCEA / SOURCEB, SRI*, SRO*), the cascade outputs (RO*) and other clocks are not
// modelled; a parameter asking for them stops the simulation.
module MULT18X18D(A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3, P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35, SIGNEDP);
  input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17;
  input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17;
  input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17;
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB;
  input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3;
  output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35;
  output SIGNEDP;
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0";
  parameter REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_INPUTC_CE = "CE0";
  parameter REG_INPUTC_RST = "RST0";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_PIPELINE_CE = "CE0";
  parameter REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0";
  parameter CLK0_DIV = "ENABLED";
  parameter CLK1_DIV = "ENABLED";
  parameter CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED";
  parameter HIGHSPEED_CLK = "NONE";
  parameter GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";

  initial begin
    if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
        || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
        || (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0")
        || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")
        || RESETMODE != "SYNC" || MULT_BYPASS != "DISABLED")
      $fatal(1, "MULT18X18D model: only registers on CLK0, synchronous reset, no bypass");
  end

  wire [3:0] ce = {CE3, CE2, CE1, CE0};
  wire [3:0] rst = {RST3, RST2, RST1, RST0};
  wire ce_a = ce[REG_INPUTA_CE == "CE1" ? 1 : REG_INPUTA_CE == "CE2" ? 2 : REG_INPUTA_CE == "CE3" ? 3 : 0];
  wire ce_b = ce[REG_INPUTB_CE == "CE1" ? 1 : REG_INPUTB_CE == "CE2" ? 2 : REG_INPUTB_CE == "CE3" ? 3 : 0];
  wire ce_p = ce[REG_PIPELINE_CE == "CE1" ? 1 : REG_PIPELINE_CE == "CE2" ? 2 : REG_PIPELINE_CE == "CE3" ? 3 : 0];
  wire ce_o = ce[REG_OUTPUT_CE == "CE1" ? 1 : REG_OUTPUT_CE == "CE2" ? 2 : REG_OUTPUT_CE == "CE3" ? 3 : 0];
  wire rst_a = rst[REG_INPUTA_RST == "RST1" ? 1 : REG_INPUTA_RST == "RST2" ? 2 : REG_INPUTA_RST == "RST3" ? 3 : 0];
  wire rst_b = rst[REG_INPUTB_RST == "RST1" ? 1 : REG_INPUTB_RST == "RST2" ? 2 : REG_INPUTB_RST == "RST3" ? 3 : 0];
  wire rst_p = rst[REG_PIPELINE_RST == "RST1" ? 1 : REG_PIPELINE_RST == "RST2" ? 2 : REG_PIPELINE_RST == "RST3" ? 3 : 0];
  wire rst_o = rst[REG_OUTPUT_RST == "RST1" ? 1 : REG_OUTPUT_RST == "RST2" ? 2 : REG_OUTPUT_RST == "RST3" ? 3 : 0];

  wire [18:0] a_in = {SIGNEDA, {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0}};
  wire [18:0] b_in = {SIGNEDB, {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0}};
  reg [18:0] a_reg = 19'd0, b_reg = 19'd0;
  always @(posedge CLK0) begin
    if (rst_a) a_reg <= 19'd0; else if (ce_a) a_reg <= a_in;
    if (rst_b) b_reg <= 19'd0; else if (ce_b) b_reg <= b_in;
  end
  wire [18:0] a = REG_INPUTA_CLK == "NONE" ? a_in : a_reg;
  wire [18:0] b = REG_INPUTB_CLK == "NONE" ? b_in : b_reg;
  // Bit 18 is the signed flag: the operand is sign-extended when it is set.
  wire signed [37:0] a_ext = {{20{a[18] & a[17]}}, a[17:0]};
  wire signed [37:0] b_ext = {{20{b[18] & b[17]}}, b[17:0]};
  wire signed [37:0] full = a_ext * b_ext;
  wire [35:0] product = full[35:0];
  reg [35:0] pipeline_reg = 36'd0, output_reg = 36'd0;
  wire [35:0] pipelined = REG_PIPELINE_CLK == "NONE" ? product : pipeline_reg;
  always @(posedge CLK0) begin
    if (rst_p) pipeline_reg <= 36'd0; else if (ce_p) pipeline_reg <= product;
    if (rst_o) output_reg <= 36'd0; else if (ce_o) output_reg <= pipelined;
  end
  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = REG_OUTPUT_CLK == "NONE" ? pipelined : output_reg;
  assign SIGNEDP = a[18] | b[18];
endmodule
