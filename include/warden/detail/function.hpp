#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace warden::detail {

// A move-only std::function: completion handlers and child bodies are move-only, and
// std::move_only_function is C++23.
template <class Signature>
class unique_function;

template <class R, class... Args>
class unique_function<R(Args...)> {
    struct callable {
        virtual ~callable() = default;
        virtual R call(Args... args) = 0;
    };
    template <class F>
    struct holder final : callable {
        F f;
        explicit holder(F&& fn)
            : f(std::move(fn)) {}
        R call(Args... args) override { return std::invoke(f, std::forward<Args>(args)...); }
    };
    std::unique_ptr<callable> f_;

  public:
    unique_function() noexcept = default;
    template <class F>
    requires(!std::is_same_v<std::decay_t<F>, unique_function> &&
             std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
        unique_function(F&& f) // NOLINT(google-explicit-constructor): a function wrapper converts
        : f_(std::make_unique<holder<std::decay_t<F>>>(std::decay_t<F>(std::forward<F>(f)))) {}

    explicit operator bool() const noexcept { return f_ != nullptr; }
    R operator()(Args... args) { return f_->call(std::forward<Args>(args)...); }
};

// A non-owning reference to a callable, for predicates used only during a call.
template <class Signature>
class function_ref;

template <class R, class... Args>
class function_ref<R(Args...)> {
    void* object_;
    R (*call_)(void*, Args...);

  public:
    template <class F>
    requires(!std::is_same_v<std::decay_t<F>, function_ref> &&
             std::is_invocable_r_v<R, F&, Args...>) function_ref(F& f)
    noexcept // NOLINT(google-explicit-constructor)
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f))))
        , call_([](void* o, Args... args) -> R {
            return std::invoke(*static_cast<F*>(o), std::forward<Args>(args)...);
        }) {}

    R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }
};

} // namespace warden::detail
