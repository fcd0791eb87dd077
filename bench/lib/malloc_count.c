// LD_PRELOAD malloc counter for bench/alloc_per_request.sh: counts malloc, calloc and realloc calls
// (operator new goes through malloc) and every 50 ms writes "mallocs frees" to $MALLOC_COUNT_FILE.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
static atomic_ulong n_malloc, n_free;
static void* (*real_malloc)(size_t);
static void* (*real_calloc)(size_t, size_t);
static void* (*real_realloc)(void*, size_t);
static void (*real_free)(void*);
static char boot[4096]; static size_t boot_used;
static void* boot_alloc(size_t n){ n=(n+15)&~15ul; void* p=boot+boot_used; boot_used+=n; return p; }
static void init(void){
  real_malloc = dlsym(RTLD_NEXT,"malloc"); real_calloc=dlsym(RTLD_NEXT,"calloc");
  real_realloc=dlsym(RTLD_NEXT,"realloc"); real_free=dlsym(RTLD_NEXT,"free");
}
void* malloc(size_t n){ if(!real_malloc) init(); atomic_fetch_add_explicit(&n_malloc,1,memory_order_relaxed); return real_malloc(n); }
void* calloc(size_t a,size_t b){ if(!real_calloc){ if(!real_malloc && boot_used==0){} void*p=boot_alloc(a*b); memset(p,0,a*b); if(!real_calloc) { static int in; if(!in){in=1; init(); in=0;} } return p;} atomic_fetch_add_explicit(&n_malloc,1,memory_order_relaxed); return real_calloc(a,b); }
void* realloc(void* p,size_t n){ if(!real_realloc) init(); atomic_fetch_add_explicit(&n_malloc,1,memory_order_relaxed); return real_realloc(p,n); }
void free(void* p){ if((char*)p>=boot && (char*)p<boot+sizeof boot) return; if(!real_free) init(); if(p) atomic_fetch_add_explicit(&n_free,1,memory_order_relaxed); real_free(p); }
static void* writer(void* arg){ const char* f=arg; char tmp[512]; snprintf(tmp,sizeof tmp,"%s.tmp",f);
  for(;;){ char b[64]; int len=snprintf(b,sizeof b,"%lu %lu\n",atomic_load(&n_malloc),atomic_load(&n_free));
    int fd=open(tmp,O_WRONLY|O_CREAT|O_TRUNC,0644); if(fd>=0){ write(fd,b,len); close(fd); rename(tmp,f);} usleep(50000);} return 0; }
__attribute__((constructor)) static void start(void){ const char* f=getenv("MALLOC_COUNT_FILE"); if(!f) return; pthread_t t; pthread_create(&t,0,writer,(void*)f); pthread_detach(t); }
