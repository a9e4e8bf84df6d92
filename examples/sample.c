/* The quick start's sample: a "server" whose four threads each wait a few calls deep.
 * Build: cc -g -O0 -fno-omit-frame-pointer -pthread sample.c -o sample */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void __attribute__((noinline)) wait_for_work(int worker) {
    for (;;) pause();
}

static void __attribute__((noinline)) handle_request(int worker, int depth) {
    volatile int pending = depth;
    if (depth > 0)
        handle_request(worker, depth - 1);
    wait_for_work(worker + pending);
}

static void *worker_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "worker-%ld", id);
    pthread_setname_np(pthread_self(), name);
    handle_request((int)id, (int)id + 1);
    return NULL;
}

int main(void) {
    pthread_t threads[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&threads[i], NULL, worker_main, (void *)(i + 1));
    printf("sample: pid %d, 4 threads waiting\n", (int)getpid());
    fflush(stdout);
    wait_for_work(0);
    return 0;
}
