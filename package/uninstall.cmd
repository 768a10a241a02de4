@echo off
rem uninstall.cmd - stops and removes the gate driver @VERSION@: the
rem service (and its key, with Parameters), the ETW manifest registration,
rem the System log source, gate.sys and %ProgramFiles%\gate.
rem
rem   uninstall.cmd            remove an installation
rem   uninstall.cmd /rollback  (used by install.cmd) remove whatever part
rem                            of an installation exists, quietly
rem
rem Run from an elevated prompt. Each step is checked; at the end the script
rem verifies nothing is left and names anything that is.
setlocal EnableExtensions EnableDelayedExpansion

set "SERVICE=gate"
set "SYS=%SystemRoot%\System32\drivers\gate.sys"
set "APPDIR=%ProgramFiles%\gate"
set "SVCKEY=HKLM\SYSTEM\CurrentControlSet\Services\%SERVICE%"
set "LOGKEY=HKLM\SYSTEM\CurrentControlSet\Services\EventLog\System\%SERVICE%"
set "ROLLBACK=0"
if /i "%~1"=="/rollback" set "ROLLBACK=1"
set "ERRORS=0"

rem Run from a copy in %TEMP% when started from the folder this deletes
rem (Windows' cmd reads a script line by line as it runs it); control passes
rem to the copy for good. Wine's cmd keeps the first script open, so there
rem the folder survives: run the package folder's uninstall.cmd under Wine.
if /i "%~dp0"=="%APPDIR%\" if not defined GATE_UNINSTALL_COPY (
    set "GATE_UNINSTALL_COPY=%TEMP%\gate-uninstall-%RANDOM%.cmd"
    copy /y "%~f0" "!GATE_UNINSTALL_COPY!" >nul
    if errorlevel 1 (
        echo uninstall.cmd: FAILED: cannot copy itself to %TEMP%; run the uninstall.cmd of the package folder.
        exit /b 1
    )
    "!GATE_UNINSTALL_COPY!" %*
)

reg add "HKLM\SOFTWARE\gate-install-probe" /f >nul 2>&1
if errorlevel 1 (
    echo uninstall.cmd: FAILED: this needs an elevated prompt ^(Run as administrator^); nothing was changed.
    exit /b 5
)
reg delete "HKLM\SOFTWARE\gate-install-probe" /f >nul 2>&1

rem ---- stop the driver
sc query %SERVICE% >nul 2>&1
if errorlevel 1 (
    call :say "no service %SERVICE%"
    goto service_gone
)
sc query %SERVICE% | find "STOPPED" >nul
if errorlevel 1 (
    call :say "stopping %SERVICE%"
    sc stop %SERVICE% >nul
    call :wait_stopped
    if errorlevel 1 (
        echo uninstall.cmd: FAILED: %SERVICE% did not stop within 20 s; nothing else was removed.
        echo uninstall.cmd: retry, or reboot and run uninstall.cmd again.
        exit /b 1
    )
)
call :say "deleting the service %SERVICE%, its registry key and Parameters"
sc delete %SERVICE% >nul
if errorlevel 1 (
    echo uninstall.cmd: FAILED: sc delete %SERVICE%
    set "ERRORS=1"
)
:service_gone

rem ---- ETW manifest and System log source
if exist "%APPDIR%\gate.man" (
    call :say "unregistering the ETW manifest: wevtutil um"
    wevtutil um "%APPDIR%\gate.man"
    if errorlevel 1 (
        echo uninstall.cmd: FAILED: wevtutil um "%APPDIR%\gate.man"
        set "ERRORS=1"
    )
)
reg query "%LOGKEY%" >nul 2>&1
if not errorlevel 1 (
    call :say "removing the System log source %SERVICE%"
    reg delete "%LOGKEY%" /f >nul
    if errorlevel 1 (
        echo uninstall.cmd: FAILED: reg delete "%LOGKEY%"
        set "ERRORS=1"
    )
)

rem ---- files
if exist "%SYS%" (
    call :say "deleting %SYS%"
    del /f /q "%SYS%"
)
if exist "%APPDIR%" (
    call :say "deleting %APPDIR%"
    rmdir /s /q "%APPDIR%"
)

rem ---- verify
set "LEFT="
sc query %SERVICE% >nul 2>&1
if not errorlevel 1 set "LEFT=!LEFT! service-%SERVICE%"
reg query "%SVCKEY%" >nul 2>&1
if not errorlevel 1 set "LEFT=!LEFT! %SVCKEY%"
reg query "%LOGKEY%" >nul 2>&1
if not errorlevel 1 set "LEFT=!LEFT! %LOGKEY%"
if exist "%SYS%" set "LEFT=!LEFT! %SYS%"
if exist "%APPDIR%" set "LEFT=!LEFT! %APPDIR%"
if not "!LEFT!"=="" (
    echo uninstall.cmd: FAILED: still present:!LEFT!
    echo uninstall.cmd: a service marked for deletion goes at the next reboot; a file in use after the driver stops.
    exit /b 1
)
if "%ERRORS%"=="1" exit /b 1
call :say "%SERVICE% is removed"
if "%ROLLBACK%"=="1" echo uninstall.cmd: rolled back: nothing of %SERVICE% is left installed.
exit /b 0

:say
if "%ROLLBACK%"=="0" echo uninstall.cmd: %~1
exit /b 0

:wait_stopped
for /l %%n in (1,1,20) do (
    sc query %SERVICE% | find "STOPPED" >nul
    if not errorlevel 1 exit /b 0
    ping -n 2 127.0.0.1 >nul
)
exit /b 1
