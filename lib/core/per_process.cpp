#include "core/per_process.hpp"

#include <new>

namespace coproc::detail {

namespace {
struct kept_node {
  const void* object;
  kept_node* next;
};
std::atomic<kept_node*> kept_head{nullptr};
}  // namespace

void keep_forever(const void* object) noexcept {
  if (!object) return;
  auto* node = new (std::nothrow) kept_node{object, kept_head.load(std::memory_order_relaxed)};
  if (!node) return;
  while (!kept_head.compare_exchange_weak(node->next, node, std::memory_order_release)) {
  }
}

}  // namespace coproc::detail
