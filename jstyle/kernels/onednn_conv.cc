// jstyle's bfloat16 3x3 convolution for XLA:CPU, through oneDNN.
//
// XLA:CPU computes a bfloat16 convolution by converting its operands to float32 and back,
// so bfloat16 is never faster there. oneDNN runs it with the CPU's bfloat16 dot-product
// instructions (AVX512-BF16, AMX-BF16), which accumulate in float32 and round the result
// to bfloat16. One XLA FFI handler: a 3x3, stride 1, SAME convolution of NHWC bfloat16
// images with an HWIO bfloat16 kernel, which is all VGG-19 needs, forward and (with the
// flipped, transposed kernel) for the input gradient. Built and loaded by jstyle.onednn.

#include <dnnl.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;  // N, H, W, C, O

struct Conv {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward primitive;
  dnnl::reorder weights_reorder;  // HWIO -> the layout the primitive chose
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Primitives are built once per shape (a millisecond or two each) and shared.
std::shared_ptr<Conv> ConvFor(const Shape& shape) {
  static std::mutex mutex;
  static std::map<Shape, std::shared_ptr<Conv>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(shape);
  if (found != cache.end()) return found->second;
  auto [n, h, w, c, o] = shape;
  using tag = dnnl::memory::format_tag;
  const auto bf16 = dnnl::memory::data_type::bf16;
  dnnl::memory::desc src({n, c, h, w}, bf16, tag::nhwc);
  dnnl::memory::desc weights({o, c, 3, 3}, bf16, tag::any);
  dnnl::memory::desc dst({n, o, h, w}, bf16, tag::nhwc);
  dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src, weights,
      dst, {1, 1}, {1, 1}, {1, 1});
  dnnl::convolution_forward::primitive_desc pd(desc, Engine());
  dnnl::memory::desc user_weights({o, c, 3, 3}, bf16, tag::hwio);
  dnnl::reorder::primitive_desc reorder_pd(Engine(), user_weights, Engine(),
                                           pd.weights_desc());
  auto conv = std::make_shared<Conv>(
      Conv{pd, dnnl::convolution_forward(pd), dnnl::reorder(reorder_pd)});
  cache.emplace(shape, conv);
  return conv;
}

ffi::Error Conv3x3Impl(ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> kernel,
                       ffi::ResultBuffer<ffi::BF16> y) {
  auto xd = x.dimensions();
  auto kd = kernel.dimensions();
  if (xd.size() < 3 || kd.size() < 4) {
    return ffi::Error::InvalidArgument("conv3x3: x must be (..., H, W, C), kernel (3, 3, C, O)");
  }
  int64_t n = 1;
  for (size_t i = 0; i + 3 < xd.size(); ++i) n *= xd[i];
  int64_t h = xd[xd.size() - 3], w = xd[xd.size() - 2], c = xd[xd.size() - 1];
  size_t kr = kd.size();
  for (size_t i = 0; i + 4 < kr; ++i) {
    if (kd[i] != 1) return ffi::Error::InvalidArgument("conv3x3: one kernel per call");
  }
  if (kd[kr - 4] != 3 || kd[kr - 3] != 3 || kd[kr - 2] != c) {
    return ffi::Error::InvalidArgument("conv3x3: the kernel must be (3, 3, C, O)");
  }
  int64_t o = kd[kr - 1];
  try {
    auto conv = ConvFor({n, h, w, c, o});
    auto& engine = Engine();
    dnnl::stream stream(engine);
    using tag = dnnl::memory::format_tag;
    const auto bf16 = dnnl::memory::data_type::bf16;
    dnnl::memory user_weights({{o, c, 3, 3}, bf16, tag::hwio}, engine, kernel.untyped_data());
    dnnl::memory weights(conv->pd.weights_desc(), engine);
    conv->weights_reorder.execute(stream, user_weights, weights);
    dnnl::memory src(conv->pd.src_desc(), engine, x.untyped_data());
    dnnl::memory dst(conv->pd.dst_desc(), engine, y->untyped_data());
    conv->primitive.execute(
        stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JstyleConv3x3Bf16, Conv3x3Impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::BF16>>());

// Which instruction set oneDNN dispatches to on this CPU (e.g. "avx512_core_bf16"), for
// jstyle.onednn to tell a CPU with bfloat16 instructions from one that would emulate them.
extern "C" const char* JstyleConv3x3Impl() {
  static std::string info;
  try {
    info = ConvFor({1, 8, 8, 64, 64})->pd.impl_info_str();
  } catch (const dnnl::error& e) {
    info = std::string("error: ") + e.what();
  }
  return info.c_str();
}
