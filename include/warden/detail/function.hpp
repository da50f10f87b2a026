#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace warden::detail {

// A move-only std::function: completion handlers and child bodies are move-only, and
// std::move_only_function is C++23.
//
// Callables of up to three pointers live inside the object: a child's body, its cancel
// action and its pool job are each one of these per child, and a heap block apiece was a
// measurable share of what a trivial child costs (bench/README.md).
template <class Signature>
class unique_function;

template <class R, class... Args>
class unique_function<R(Args...)> {
    static constexpr std::size_t inline_size = 3 * sizeof(void*);

    template <class F>
    static constexpr bool fits_inline =
        sizeof(F) <= inline_size &&
        alignof(F) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<F>;

    struct operations {
        R (*call)(void* self, Args&&... args);
        // Moves the callable from `from` into `to` and destroys what is left in `from`.
        void (*relocate)(void* from, void* to) noexcept;
        void (*destroy)(void* self) noexcept;
    };

    template <class F>
    static F* target(void* storage) noexcept {
        if constexpr (fits_inline<F>)
            return std::launder(static_cast<F*>(storage));
        else
            return *static_cast<F**>(storage);
    }

    template <class F>
    static constexpr operations operations_for{
        [](void* self, Args&&... args) -> R {
            if constexpr (std::is_void_v<R>)
                std::invoke(*target<F>(self), std::forward<Args>(args)...);
            else
                return std::invoke(*target<F>(self), std::forward<Args>(args)...);
        },
        [](void* from, void* to) noexcept {
            if constexpr (fits_inline<F>) {
                F* source = target<F>(from);
                ::new (to) F(std::move(*source));
                source->~F();
            } else {
                *static_cast<F**>(to) = *static_cast<F**>(from);
            }
        },
        [](void* self) noexcept {
            if constexpr (fits_inline<F>)
                target<F>(self)->~F();
            else
                delete target<F>(self);
        }};

    alignas(std::max_align_t) unsigned char storage_[inline_size];
    const operations* operations_ = nullptr;

    void reset() noexcept {
        if (operations_ != nullptr)
            operations_->destroy(storage_);
        operations_ = nullptr;
    }

  public:
    unique_function() noexcept = default;
    template <class F>
    requires(!std::is_same_v<std::decay_t<F>, unique_function> &&
             std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
        unique_function(F&& f) // NOLINT(google-explicit-constructor): a function wrapper converts
    {
        using fn = std::decay_t<F>;
        if constexpr (fits_inline<fn>)
            ::new (static_cast<void*>(storage_)) fn(std::forward<F>(f));
        else
            ::new (static_cast<void*>(storage_)) fn*(new fn(std::forward<F>(f)));
        operations_ = &operations_for<fn>;
    }
    unique_function(unique_function&& other) noexcept
        : operations_(std::exchange(other.operations_, nullptr)) {
        if (operations_ != nullptr)
            operations_->relocate(other.storage_, storage_);
    }
    unique_function& operator=(unique_function&& other) noexcept {
        if (this != &other) {
            reset();
            operations_ = std::exchange(other.operations_, nullptr);
            if (operations_ != nullptr)
                operations_->relocate(other.storage_, storage_);
        }
        return *this;
    }
    ~unique_function() { reset(); }

    explicit operator bool() const noexcept { return operations_ != nullptr; }
    R operator()(Args... args) { return operations_->call(storage_, std::forward<Args>(args)...); }
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
