// coproc internals: registered targets (COPROC_TARGET), the functions that a spawned or
// forkserver child finds by name, and how their arguments travel there as JSON.
//
// A fork child is a copy of the parent and calls any callable. A spawned child is a fresh exec
// of the same program and a forkserver child a copy of the server: all they share with the
// parent is the program's code. So the parent sends the name the function was registered
// under and its arguments as a typed message (a JSON array); the child converts the array to
// the function's decayed parameter types and calls it.
//
// Connections are arguments too: their descriptors travel beside the message (inherited by
// exec, or SCM_RIGHTS to a forkserver) and the array holds their place as a handed_connection.
#pragma once

#include <charconv>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <coproc/bytes.hpp>
#include <coproc/detail/json.hpp>

namespace coproc::detail {

// One registered function. The entries are static objects linked into one list by their
// constructors (before main, or when a shared library is loaded): no allocation, no limit.
struct registered_target {
  const char* name = nullptr;
  const void* address = nullptr;
  // In the child: calls the function at `address` with `args`, a JSON array of its arguments.
  // Throws coproc::message_error when the array does not describe them.
  void (*invoke)(const void* address, std::span<const std::byte> args) = nullptr;
  // The same, returning the result as JSON ("null" for void): apply_async in a spawned or
  // forkserver child. Null when the result type cannot be sent.
  bytes (*invoke_result)(const void* address, std::span<const std::byte> args) = nullptr;
  // A pool's chunk: `chunk` is a JSON array of argument arrays; returns the JSON array of the
  // results, in order. Null with invoke_result.
  bytes (*invoke_many)(const void* address, std::span<const std::byte> chunk) = nullptr;
  registered_target* next = nullptr;
};

void register_target(registered_target& entry) noexcept;
// The entry of the function at `address`, or nullptr.
const registered_target* find_target(const void* address) noexcept;
// The entry that target_key() named, or nullptr.
const registered_target* find_target(std::string_view key) noexcept;
// The name that finds `entry` in another process running the same program: its registered
// name, and "#k" for the k-th of several functions registered under one name (in different
// namespaces; the program registers them in the same order every time it runs).
std::string target_key(const registered_target& entry);
// The name a function was registered under, or nullptr.
const char* registered_name(const void* address) noexcept;

// A connection among the arguments, as the JSON array carries it: the index of its descriptor
// among those handed to the child, and its direction.
struct handed_connection {
  int index = -1;  // -1: the connection was closed when the process started
  bool readable = true;
  bool writable = true;
};
BOOST_DESCRIBE_STRUCT(handed_connection, (), (index, readable, writable))

// In the child: the descriptor handed to it at `index` (the caller owns it from now on), or -1.
int take_handed_descriptor(int index) noexcept;

// A type that travels as a descriptor (coproc::connection) declares, where ADL finds them:
//   handed_connection coproc_exec_form(const T&, std::vector<int>& fds);  // appends its fd
//   T coproc_adopt(std::type_identity<T>, const handed_connection&);       // in the child
template <class T>
concept handed_type = requires(const T& v, std::vector<int>& fds, const handed_connection& h) {
  { coproc_exec_form(v, fds) } -> std::same_as<handed_connection>;
  { coproc_adopt(std::type_identity<T>{}, h) } -> std::same_as<T>;
};

// What can be sent as an argument: a typed message or a handed type. Recursive over the
// containers, so that an unsendable element is found here rather than by a static_assert.
template <class T>
struct sendable_arg;
template <class T>
inline constexpr bool sendable_arg_v = sendable_arg<std::remove_cvref_t<T>>::value;

template <class T>
struct sendable_arg
    : std::bool_constant<handed_type<T> || json::boost_json_value<T> || std::same_as<T, bool> ||
                         json::integer<T> || json::floating<T> || json::is_string<T>::value ||
                         json::is_string_view<T>::value || json::char_array<T> ||
                         json::char_pointer<T> || std::same_as<T, std::monostate> ||
                         std::same_as<T, std::nullopt_t> || json::user_from<T> ||
                         json::described_enum<T> || json::described_struct<T> ||
                         (json::iterable<T> && requires { typename T::value_type; })> {};
template <class T>
struct sendable_arg<std::optional<T>> : std::bool_constant<sendable_arg_v<T>> {};
template <class... Ts>
struct sendable_arg<std::variant<Ts...>> : std::bool_constant<(sendable_arg_v<Ts> && ...)> {};
template <class... Ts>
struct sendable_arg<std::tuple<Ts...>> : std::bool_constant<(sendable_arg_v<Ts> && ...)> {};
template <class A, class B>
struct sendable_arg<std::pair<A, B>> : std::bool_constant<sendable_arg_v<A> && sendable_arg_v<B>> {};
template <class T, class A>
struct sendable_arg<std::vector<T, A>> : std::bool_constant<sendable_arg_v<T>> {};
template <class T>
struct sendable_arg<std::reference_wrapper<T>> : std::bool_constant<handed_type<std::remove_cv_t<T>>> {};

// The JSON array of `args`, the descriptors of the handed ones appended to `fds`.
template <class... Args>
bytes exec_arguments(const std::tuple<Args...>& args, std::vector<int>& fds) {
  bytes out;
  out.push_back(std::byte{'['});
  bool first = true;
  auto add = [&](const auto& arg) {
    using A = std::remove_cvref_t<decltype(arg)>;
    if (!first) out.push_back(std::byte{','});
    first = false;
    bytes one;
    if constexpr (handed_type<A>) {
      one = to_message(coproc_exec_form(arg, fds));
    } else if constexpr (requires { arg.get(); requires handed_type<std::remove_cvref_t<decltype(arg.get())>>; }) {
      one = to_message(coproc_exec_form(arg.get(), fds));
    } else {
      one = to_message(arg);
    }
    out.insert(out.end(), one.begin(), one.end());
  };
  std::apply([&](const Args&... a) { (add(a), ...); }, args);
  out.push_back(std::byte{']'});
  return out;
}

// The child's side: the function's parameters as they are read from the array.
template <class P>
using wire_t = std::conditional_t<handed_type<std::decay_t<P>>, handed_connection, std::decay_t<P>>;

// A parameter's value in the child, for the length of the call: a handed type is adopted and
// owned here (so that a `connection&` parameter binds to it); anything else is the value read
// from the array, moved into a by-value parameter.
template <class P>
struct arg_holder {
  wire_t<P>& v;
  explicit arg_holder(wire_t<P>& w) : v(w) {}
  decltype(auto) get() {
    using T = std::decay_t<P>;
    return static_cast<std::conditional_t<std::is_lvalue_reference_v<P>, T&, T&&>>(v);
  }
};
template <class P>
  requires handed_type<std::decay_t<P>>
struct arg_holder<P> {
  std::decay_t<P> v;
  explicit arg_holder(handed_connection& h) : v(coproc_adopt(std::type_identity<std::decay_t<P>>{}, h)) {}
  decltype(auto) get() {
    using T = std::decay_t<P>;
    return static_cast<std::conditional_t<std::is_lvalue_reference_v<P>, T&, T&&>>(v);
  }
};

template <class F>
struct function_parameters;
template <class R, class... P>
struct function_parameters<R(P...)> {
  using wire = std::tuple<wire_t<P>...>;
  static constexpr bool result_sendable = std::is_void_v<R> || sendable_arg_v<R>;
  template <class Wire, std::size_t... I>
  static R call(R (*fn)(P...), Wire& w, std::index_sequence<I...>) {
    [[maybe_unused]] std::tuple<arg_holder<P>...> held(arg_holder<P>(std::get<I>(w))...);
    return fn(std::get<I>(held).get()...);
  }
  static void invoke(const void* address, std::span<const std::byte> args) {
    auto w = from_message<wire>(args);
    call(reinterpret_cast<R (*)(P...)>(const_cast<void*>(address)), w,
         std::index_sequence_for<P...>{});
  }
  static bytes invoke_result(const void* address, std::span<const std::byte> args) {
    auto w = from_message<wire>(args);
    auto* fn = reinterpret_cast<R (*)(P...)>(const_cast<void*>(address));
    if constexpr (std::is_void_v<R>) {
      call(fn, w, std::index_sequence_for<P...>{});
      return {std::byte{'n'}, std::byte{'u'}, std::byte{'l'}, std::byte{'l'}};
    } else if constexpr (sendable_arg_v<R>) {
      return to_message(call(fn, w, std::index_sequence_for<P...>{}));
    } else {
      return {};
    }
  }
  static bytes invoke_many(const void* address, std::span<const std::byte> chunk) {
    auto items = from_message<std::vector<wire>>(chunk);
    auto* fn = reinterpret_cast<R (*)(P...)>(const_cast<void*>(address));
    bytes out;
    out.reserve(items.size() * 4 + 2);
    if constexpr (std::is_void_v<R>) {
      json::writer w(out, typeid(std::vector<std::monostate>));
      w.open('[');
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) w.raw(',');
        call(fn, items[i], std::index_sequence_for<P...>{});
        w.null();
      }
      w.close(']');
    } else if constexpr (json::fast_integer<R>::value) {
      // Integer results, the common map: straight into the buffer, 21 bytes a number at most.
      out.resize(items.size() * 21 + 2);
      char* const first = reinterpret_cast<char*>(out.data());
      char* p = first;
      *p++ = '[';
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) *p++ = ',';
        p = std::to_chars(p, p + 20, call(fn, items[i], std::index_sequence_for<P...>{})).ptr;
      }
      *p++ = ']';
      out.resize(static_cast<std::size_t>(p - first));
    } else if constexpr (sendable_arg_v<R>) {
      json::writer w(out, typeid(std::vector<R>));
      w.open('[');
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) w.raw(',');
        json::write(w, call(fn, items[i], std::index_sequence_for<P...>{}));
      }
      w.close(']');
    }
    return out;
  }
};
template <class R, class... P>
struct function_parameters<R(P...) noexcept> : function_parameters<R(P...)> {};

template <class F>
struct target_registrar {
  static_assert(std::is_function_v<F>, "COPROC_TARGET takes the name of a function");
  registered_target entry;
  target_registrar(const char* name, F* fn) noexcept {
    entry.name = name;
    entry.address = reinterpret_cast<const void*>(fn);
    entry.invoke = &function_parameters<F>::invoke;
    if constexpr (function_parameters<F>::result_sendable) {
      entry.invoke_result = &function_parameters<F>::invoke_result;
      entry.invoke_many = &function_parameters<F>::invoke_many;
    }
    register_target(entry);
  }
  target_registrar(const target_registrar&) = delete;
};

}  // namespace coproc::detail
