// logic_net: logic gate network exported by diffgates (pipelined, a register stage every 1 level)
//
// Port contract:
//   input  clk       [1]  rising-edge clock
//   input  rst       [1]  synchronous, active high: clears the valid pipeline (data registers are not reset)
//   input  in_valid  [1]  x holds a vector this cycle
//   input  x         [4]  bit i = input bit i of the encoding (see input_layout)
//   output y         [4]  class c's count (0..3) at y[c*2 +: 2], unsigned
//   output class_idx [1]  class with the highest count; ties -> lowest index
//   output out_valid [1]  y/class_idx hold the result of the vector given 8 cycles earlier
//
// Classes K = 2, outputs per class G = 3, count width W = 2, class index width = 1.
// Gates: 9 (0 feed no output and are left out).
// Levels: gate network 5, adder tree 2 (balanced, ceil(log2 G)), argmax 1, total 8.
// Latency: 8 cycles (inputs before rising edge t -> outputs after edge t+7), throughput 1 vector/cycle; 41 register bits.
//
// Input encoding (circuit.input_layout):
//   {"bits": ["a0", "a1", "b0", "b1"], "kind": "test"}
module logic_net (
    input  wire clk,
    input  wire rst,
    input  wire in_valid,
    input  wire [3:0] x,
    output wire [3:0] y,
    output wire class_idx,
    output wire out_valid
);
    wire n0 = x[0];
    wire n1 = x[1];
    wire n2 = x[2];
    wire n3 = x[3];
    // ---- stage 0: levels 1..1 ----
    wire n4 = n0 ^ n1;
    wire n5 = ~(n2 & n3);
    wire n9 = 1'b1;
    // ---- registers into stage 1 ----
    reg v_p1;
    reg n3_p1;
    reg n4_p1;
    reg n5_p1;
    always @(posedge clk) begin
        v_p1 <= rst ? 1'b0 : in_valid;
        n3_p1 <= n3;
        n4_p1 <= n4;
        n5_p1 <= n5;
    end
    // ---- stage 1: levels 2..2 ----
    wire n6 = n4_p1 | n5_p1;
    wire n7 = ~n5_p1;
    // ---- registers into stage 2 ----
    reg v_p2;
    reg n3_p2;
    reg n4_p2;
    reg n6_p2;
    reg n7_p2;
    always @(posedge clk) begin
        v_p2 <= rst ? 1'b0 : v_p1;
        n3_p2 <= n3_p1;
        n4_p2 <= n4_p1;
        n6_p2 <= n6;
        n7_p2 <= n7;
    end
    // ---- stage 2: levels 3..3 ----
    wire n8 = n6_p2 & n3_p2;
    wire n11 = n6_p2;
    // ---- registers into stage 3 ----
    reg v_p3;
    reg n3_p3;
    reg n4_p3;
    reg n7_p3;
    reg n8_p3;
    reg n11_p3;
    always @(posedge clk) begin
        v_p3 <= rst ? 1'b0 : v_p2;
        n3_p3 <= n3_p2;
        n4_p3 <= n4_p2;
        n7_p3 <= n7_p2;
        n8_p3 <= n8;
        n11_p3 <= n11;
    end
    // ---- stage 3: levels 4..4 ----
    wire n10 = ~(n7_p3 ^ n8_p3);
    // ---- registers into stage 4 ----
    reg v_p4;
    reg n3_p4;
    reg n4_p4;
    reg n10_p4;
    reg n11_p4;
    always @(posedge clk) begin
        v_p4 <= rst ? 1'b0 : v_p3;
        n3_p4 <= n3_p3;
        n4_p4 <= n4_p3;
        n10_p4 <= n10;
        n11_p4 <= n11_p3;
    end
    // ---- stage 4: levels 5..5 ----
    wire n12 = n10_p4 & ~n4_p4;
    wire [1:0] s0_1_0 = n10_p4 + n11_p4;
    // ---- registers into stage 5 ----
    reg v_p5;
    reg n3_p5;
    reg n12_p5;
    reg [1:0] s0_1_0_p5;
    always @(posedge clk) begin
        v_p5 <= rst ? 1'b0 : v_p4;
        n3_p5 <= n3_p4;
        n12_p5 <= n12;
        s0_1_0_p5 <= s0_1_0;
    end
    // ---- stage 5: levels 6..6 ----
    wire [1:0] s0_2_0 = s0_1_0_p5 + n3_p5;
    wire [1:0] s1_1_0 = n12_p5 + n12_p5;
    // ---- registers into stage 6 ----
    reg v_p6;
    reg [1:0] s0_2_0_p6;
    reg [1:0] s1_1_0_p6;
    always @(posedge clk) begin
        v_p6 <= rst ? 1'b0 : v_p5;
        s0_2_0_p6 <= s0_2_0;
        s1_1_0_p6 <= s1_1_0;
    end
    // ---- stage 6: levels 7..7 ----
    wire [1:0] s1_2_0 = s1_1_0_p6 + n9;
    // ---- registers into stage 7 ----
    reg v_p7;
    reg [1:0] s0_2_0_p7;
    reg [1:0] s1_2_0_p7;
    always @(posedge clk) begin
        v_p7 <= rst ? 1'b0 : v_p6;
        s0_2_0_p7 <= s0_2_0_p6;
        s1_2_0_p7 <= s1_2_0;
    end
    // ---- stage 7: levels 8..8 ----
    wire am1_0_i = (s1_2_0_p7 > s0_2_0_p7) ? 1'd1 : 1'd0;
    // ---- registers into stage 8 ----
    reg v_p8;
    reg [1:0] s0_2_0_p8;
    reg [1:0] s1_2_0_p8;
    reg am1_0_i_p8;
    always @(posedge clk) begin
        v_p8 <= rst ? 1'b0 : v_p7;
        s0_2_0_p8 <= s0_2_0_p7;
        s1_2_0_p8 <= s1_2_0_p7;
        am1_0_i_p8 <= am1_0_i;
    end
    assign y[1:0] = s0_2_0_p8;
    assign y[3:2] = s1_2_0_p8;
    assign class_idx = am1_0_i_p8;
    assign out_valid = v_p8;
endmodule
