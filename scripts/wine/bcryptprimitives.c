/* Wine 8.0 lacks bcryptprimitives.dll, whose ProcessPrng Rust's std (1.78+)
 * imports on Windows: without it every Rust program exits at load with code 53.
 * This stand-in exports ProcessPrng on top of RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. Built by scripts/windows-test with
 * mingw and copied into the Wine prefix only. Never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
