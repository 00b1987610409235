/* Boost.Context's stack switch, declared for C. libboost_context exports these as extern "C"
 * (boost/context/detail/fcontext.hpp) but ships only a C++ header. transfer_t is two pointers,
 * returned in rax:rdx by the SysV ABI exactly as the C++ side returns it. */
#ifndef TVSA_FCONTEXT_H
#define TVSA_FCONTEXT_H
#include <stddef.h>

typedef void *fcontext_t;

struct transfer_t {
    fcontext_t fctx;  /* the context that jumped here: jump to it to go back */
    void *data;       /* jump_fcontext's vp */
};

/* Saves the current context, switches to `to`; returns when something jumps back here. */
struct transfer_t jump_fcontext(fcontext_t const to, void *vp);

/* A context that, when first jumped to, runs fn on the stack whose top is sp (size bytes). */
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(struct transfer_t));

#endif
