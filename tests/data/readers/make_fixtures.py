# Writes the tiny reader fixtures in this folder (run with Debian's /usr/bin/python3: torch 1.13, onnx 1.12).
import collections, os, struct
import numpy as np
import torch
import onnx
from onnx import helper, numpy_helper, TensorProto

here = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)

# --- PyTorch zip: every supported storage type, a view with an offset, a transposed
# (non-contiguous) tensor, two keys on one tensor, a Parameter, an int64 buffer (skipped).
module = torch.nn.Sequential(torch.nn.Linear(4, 3))
sd = module.state_dict()  # OrderedDict with _metadata (pickled with BUILD)
base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
sd["f32"] = base
sd["f16"] = torch.tensor([1.0, -2.5, 0.5, 65504.0, 6e-8], dtype=torch.float16)
sd["bf16"] = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.25, 1e30]], dtype=torch.bfloat16)
sd["i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
sd["u8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
sd["transposed"] = base.t()
sd["row_view"] = base[1]  # storage offset 4, shares base's storage
sd["tied_a"] = sd["f16"]
sd["param"] = torch.nn.Parameter(torch.tensor([0.5, 1.5]))
sd["position_ids"] = torch.arange(4).unsqueeze(0)
torch.save(sd, os.path.join(here, "torch_small.pt"))
torch.save({"state_dict": collections.OrderedDict(w=torch.ones(2, 2)), "epoch": 3},
           os.path.join(here, "torch_nested.pt"))
torch.save({"w": torch.ones(2)}, os.path.join(here, "torch_legacy.pt"),
           _use_new_zipfile_serialization=False)

# --- ONNX: a dynamically quantized Linear (MatMulInteger chain as ORT writes it), a uint8
# embedding read through Gather + DequantizeLinear, an fp32 MatMul + Add, a LayerNorm-ish weight.
rng = np.random.default_rng(0)
q = rng.integers(-127, 128, size=(3, 2), dtype=np.int8)        # B [in=3, out=2]
w_scale = np.array([0.5, 0.25], dtype=np.float32)
w_zp = np.zeros(2, dtype=np.int8)
bias = np.array([1.0, -1.0], dtype=np.float32)
table = rng.integers(0, 256, size=(5, 3), dtype=np.uint8)
emb_scale = np.array(0.125, dtype=np.float32)
emb_zp = np.array(128, dtype=np.uint8)
w_fp = rng.standard_normal((2, 4)).astype(np.float32)          # B [in=2, out=4]
b_fp = rng.standard_normal(4).astype(np.float32)
ln = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
inits = [
    numpy_helper.from_array(table, "emb.word_embeddings.weight_quantized"),
    numpy_helper.from_array(emb_scale, "emb.word_embeddings.weight_scale"),
    numpy_helper.from_array(emb_zp, "emb.word_embeddings.weight_zero_point"),
    numpy_helper.from_array(q, "onnx::MatMul_7_quantized"),
    helper.make_tensor("onnx::MatMul_7_scale", TensorProto.FLOAT, [2], w_scale.tolist()),
    helper.make_tensor("onnx::MatMul_7_zero_point", TensorProto.INT8, [2], w_zp.tolist()),
    numpy_helper.from_array(bias, "layer.dense.bias"),
    numpy_helper.from_array(w_fp, "onnx::MatMul_9"),
    numpy_helper.from_array(b_fp, "onnx::Add_10"),
    numpy_helper.from_array(ln, "layer.LayerNorm.weight"),
    numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "onnx::Reshape_11"),
]
nodes = [
    helper.make_node("Gather", ["emb.word_embeddings.weight_quantized", "ids"], ["g_q"], name="/emb/Gather"),
    helper.make_node("DequantizeLinear", ["g_q", "emb.word_embeddings.weight_scale",
                                          "emb.word_embeddings.weight_zero_point"], ["x"], name="/emb/DQ"),
    helper.make_node("DynamicQuantizeLinear", ["x"], ["x_q", "x_s", "x_zp"], name="/layer/DQL"),
    helper.make_node("MatMulInteger", ["x_q", "onnx::MatMul_7_quantized", "x_zp", "onnx::MatMul_7_zero_point"],
                     ["mm_i32"], name="/layer/dense/MatMul_quant"),
    helper.make_node("Cast", ["mm_i32"], ["mm_f"], to=TensorProto.FLOAT, name="/layer/dense/cast"),
    helper.make_node("Mul", ["x_s", "onnx::MatMul_7_scale"], ["scales"], name="/layer/dense/scales_mul"),
    helper.make_node("Mul", ["mm_f", "scales"], ["mm"], name="/layer/dense/out_mul"),
    helper.make_node("Add", ["layer.dense.bias", "mm"], ["h"], name="/layer/dense/Add"),
    helper.make_node("MatMul", ["h", "onnx::MatMul_9"], ["m2"], name="/head/proj/MatMul"),
    helper.make_node("Add", ["m2", "onnx::Add_10"], ["h2"], name="/head/proj/Add"),
    helper.make_node("Mul", ["h2", "layer.LayerNorm.weight"], ["y"], name="/layer/LayerNorm/Mul"),
]
graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], inits)
model = helper.make_model(graph, producer_name="tinybert-fixture", opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 7
onnx.save(model, os.path.join(here, "onnx_small.onnx"))

ext = onnx.ModelProto()
ext.CopyFrom(model)
t = ext.graph.initializer[6]
t.ClearField("raw_data")
t.data_location = TensorProto.EXTERNAL
e = t.external_data.add(); e.key = "location"; e.value = "weights.bin"
with open(os.path.join(here, "onnx_external.onnx"), "wb") as f:
    f.write(ext.SerializeToString())

# Expected values for the C++ test (printed, then hard-coded there).
print("q", q.tolist(), "table", table.tolist(), "w_fp", w_fp.tolist(), "b_fp", b_fp.tolist())
