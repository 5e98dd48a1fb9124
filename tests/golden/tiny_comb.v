// logic_net: logic gate network exported by diffgates (combinational)
//
// Port contract:
//   input  x         [4]  bit i = input bit i of the encoding (see input_layout)
//   output y         [4]  class c's count (0..3) at y[c*2 +: 2], unsigned
//   output class_idx [1]  class with the highest count; ties -> lowest index
//
// Classes K = 2, outputs per class G = 3, count width W = 2, class index width = 1.
// Gates: 9 (0 feed no output and are left out).
// Levels: gate network 5, adder tree 2 (balanced, ceil(log2 G)), argmax 1, total 8.
// Latency: 0 cycles (combinational).
//
// Input encoding (circuit.input_layout):
//   {"bits": ["a0", "a1", "b0", "b1"], "kind": "test"}
module logic_net (
    input  wire [3:0] x,
    output wire [3:0] y,
    output wire class_idx
);
    wire n0 = x[0];
    wire n1 = x[1];
    wire n2 = x[2];
    wire n3 = x[3];
    wire n4 = n0 ^ n1;
    wire n5 = ~(n2 & n3);
    wire n6 = n4 | n5;
    wire n7 = ~n5;
    wire n8 = n6 & n3;
    wire n9 = 1'b1;
    wire n10 = ~(n7 ^ n8);
    wire n11 = n6;
    wire n12 = n10 & ~n4;
    wire [1:0] s0_1_0 = n10 + n11;
    wire [1:0] s0_2_0 = s0_1_0 + n3;
    wire [1:0] s1_1_0 = n12 + n12;
    wire [1:0] s1_2_0 = s1_1_0 + n9;
    wire am1_0_i = (s1_2_0 > s0_2_0) ? 1'd1 : 1'd0;
    assign y[1:0] = s0_2_0;
    assign y[3:2] = s1_2_0;
    assign class_idx = am1_0_i;
endmodule
