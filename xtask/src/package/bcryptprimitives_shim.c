/* Test-only shim for running a Rust std .exe (gatectl.exe) under Wine 8,
 * whose prefix lacks bcryptprimitives.dll: Rust's std imports ProcessPrng
 * from it for random bytes. This forwards to RtlGenRandom
 * (advapi32!SystemFunction036). Built and copied into the Wine prefix by
 * `cargo xtask package --wine-test`; never part of the package. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG n = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}
